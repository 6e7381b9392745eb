#include "bench/scenario.h"

#include <cassert>
#include <cstdio>
#include <utility>

namespace pgmux::bench {
namespace {

constexpr const char* kPreparedName = "pgmux_bench_select";
constexpr const char* kSelectParams = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

// pgbench's tpcb-like script (pgbench.c, builtin "tpcb-like").
constexpr const char* kUpdateAccounts =
    "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
constexpr const char* kSelectAccount = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
constexpr const char* kUpdateTellers =
    "UPDATE pgbench_tellers SET tbalance = tbalance + $1 WHERE tid = $2";
constexpr const char* kUpdateBranches =
    "UPDATE pgbench_branches SET bbalance = bbalance + $1 WHERE bid = $2";
constexpr const char* kInsertHistory =
    "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) "
    "VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)";

void set_query(Step& step, std::string_view sql) {
  step.kind = Step::Kind::kQuery;
  step.sql.assign(sql);
  step.param_count = 0;
}

// A statement with numbered parameters: extended sends it as is with the
// values; simple substitutes the values as literals (all are integers).
void set_statement(Step& step, Protocol protocol, std::string_view sql,
                   std::initializer_list<int64_t> values) {
  assert(values.size() <= step.params.size());
  step.param_count = 0;
  for (int64_t v : values) step.params[static_cast<size_t>(step.param_count++)] = std::to_string(v);
  if (protocol == Protocol::kExtended) {
    step.kind = Step::Kind::kParams;
    step.sql.assign(sql);
    return;
  }
  step.kind = Step::Kind::kQuery;
  step.sql.clear();
  for (size_t i = 0; i < sql.size(); ++i) {
    if (sql[i] == '$' && i + 1 < sql.size() && sql[i + 1] >= '1' && sql[i + 1] <= '9') {
      step.sql += step.params[static_cast<size_t>(sql[i + 1] - '1')];
      ++i;
    } else {
      step.sql += sql[i];
    }
  }
  step.param_count = 0;
}

}  // namespace

uint64_t Rng::next() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int64_t Rng::between(int64_t low, int64_t high) {
  assert(low <= high);
  const uint64_t span = static_cast<uint64_t>(high - low) + 1;
  return low + static_cast<int64_t>(next() % span);
}

Scenario::Scenario(const Options& options, int scale, std::string file_sql)
    : kind_(options.scenario),
      protocol_(options.protocol),
      accounts_(int64_t{100000} * scale),
      tellers_(int64_t{10} * scale),
      branches_(scale),
      file_sql_(std::move(file_sql)) {
  char sleep[64];
  std::snprintf(sleep, sizeof(sleep), "SELECT pg_sleep(%.3f)", options.hold_ms / 1000.0);
  hold_sql_ = sleep;
}

bool Scenario::needs_scale(ScenarioKind kind) {
  return kind == ScenarioKind::kSelect || kind == ScenarioKind::kTpcb ||
         kind == ScenarioKind::kPrepared;
}

void Scenario::setup(Transaction& out) const {
  out.explicit_block = false;
  if (kind_ != ScenarioKind::kPrepared) {
    out.steps.clear();
    return;
  }
  out.steps.resize(1);
  Step& step = out.steps[0];
  step.kind = Step::Kind::kPrepare;
  step.name = kPreparedName;
  step.sql = kSelectParams;
  step.param_count = 1;  // Number of parameters declared (types inferred).
}

void Scenario::next(Transaction& out, Rng& rng) const {
  out.explicit_block = false;
  switch (kind_) {
    case ScenarioKind::kSelect: {
      out.steps.resize(1);
      set_statement(out.steps[0], protocol_, kSelectParams, {rng.between(1, accounts_)});
      return;
    }
    case ScenarioKind::kPrepared: {
      out.steps.resize(1);
      Step& step = out.steps[0];
      step.kind = Step::Kind::kPrepared;
      step.name = kPreparedName;
      step.sql.clear();
      step.param_count = 1;
      step.params[0] = std::to_string(rng.between(1, accounts_));
      return;
    }
    case ScenarioKind::kTpcb: {
      const int64_t aid = rng.between(1, accounts_);
      const int64_t bid = rng.between(1, branches_);
      const int64_t tid = rng.between(1, tellers_);
      const int64_t delta = rng.between(-5000, 5000);
      out.steps.resize(7);
      out.explicit_block = true;
      set_query(out.steps[0], "BEGIN");
      set_statement(out.steps[1], protocol_, kUpdateAccounts, {delta, aid});
      set_statement(out.steps[2], protocol_, kSelectAccount, {aid});
      set_statement(out.steps[3], protocol_, kUpdateTellers, {delta, tid});
      set_statement(out.steps[4], protocol_, kUpdateBranches, {delta, bid});
      set_statement(out.steps[5], protocol_, kInsertHistory, {tid, bid, aid, delta});
      set_query(out.steps[6], "END");
      return;
    }
    case ScenarioKind::kHold: {
      out.steps.resize(3);
      out.explicit_block = true;
      set_query(out.steps[0], "BEGIN");
      set_query(out.steps[1], hold_sql_);
      set_query(out.steps[2], "COMMIT");
      return;
    }
    case ScenarioKind::kChurn: {
      out.steps.resize(1);
      set_query(out.steps[0], "SELECT 1");
      return;
    }
    case ScenarioKind::kFile: {
      out.steps.resize(1);
      set_query(out.steps[0], file_sql_);
      return;
    }
    case ScenarioKind::kIdle:
      out.steps.clear();
      return;
  }
}

std::vector<std::string> init_statements(int scale) {
  const std::string s = std::to_string(scale);
  return {
      "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers",
      "CREATE TABLE pgbench_history (tid int, bid int, aid int, delta int, mtime timestamp, "
      "filler char(22))",
      "CREATE TABLE pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84)) "
      "WITH (fillfactor = 100)",
      "CREATE TABLE pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84)) "
      "WITH (fillfactor = 100)",
      "CREATE TABLE pgbench_branches (bid int NOT NULL, bbalance int, filler char(88)) "
      "WITH (fillfactor = 100)",
      "INSERT INTO pgbench_branches (bid, bbalance) SELECT bid, 0 FROM generate_series(1, " + s +
          ") AS bid",
      "INSERT INTO pgbench_tellers (tid, bid, tbalance) SELECT tid, (tid - 1) / 10 + 1, 0 "
      "FROM generate_series(1, " +
          s + " * 10) AS tid",
      "INSERT INTO pgbench_accounts (aid, bid, abalance, filler) SELECT aid, (aid - 1) / 100000 "
      "+ 1, 0, '' FROM generate_series(1, " +
          s + " * 100000) AS aid",
      "VACUUM ANALYZE pgbench_branches, pgbench_tellers, pgbench_accounts, pgbench_history",
      "ALTER TABLE pgbench_branches ADD PRIMARY KEY (bid)",
      "ALTER TABLE pgbench_tellers ADD PRIMARY KEY (tid)",
      "ALTER TABLE pgbench_accounts ADD PRIMARY KEY (aid)",
  };
}

}  // namespace pgmux::bench
