// What one transaction of each scenario sends: a list of libpq calls with
// their SQL and parameters, filled from a random source. Pure: the client
// (bench/client.h) turns the steps into PQsend* calls.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/options.h"

namespace pgmux::bench {

// splitmix64: small, fast and good enough to pick rows.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next();
  // Uniform in [low, high]. REQUIRES: low <= high.
  int64_t between(int64_t low, int64_t high);

 private:
  uint64_t state_;
};

struct Step {
  enum class Kind {
    kQuery,     // PQsendQuery(sql)
    kParams,    // PQsendQueryParams(sql, params)
    kPrepare,   // PQsendPrepare(name, sql)
    kPrepared,  // PQsendQueryPrepared(name, params)
  };
  Kind kind = Kind::kQuery;
  std::string sql;
  const char* name = "";  // Statement name for kPrepare and kPrepared.
  int param_count = 0;
  std::array<std::string, 4> params;
};

// One transaction's steps. Reused from one transaction to the next, so the
// strings keep their capacity and a steady run does not allocate.
struct Transaction {
  std::vector<Step> steps;
  // The steps run inside BEGIN .. END: after an error the client sends a
  // ROLLBACK before the next transaction.
  bool explicit_block = false;
};

class Scenario {
 public:
  // `file_sql` is the --file text (kFile only); `scale` >= 1 for the pgbench
  // scenarios.
  Scenario(const Options& options, int scale, std::string file_sql);

  ScenarioKind kind() const { return kind_; }
  // churn: each transaction is a whole connection.
  bool connects_per_transaction() const { return kind_ == ScenarioKind::kChurn; }
  // idle: connections only, no transactions.
  bool runs_transactions() const { return kind_ != ScenarioKind::kIdle; }
  static bool needs_scale(ScenarioKind kind);

  // Steps to run once after each connect (none for most scenarios).
  void setup(Transaction& out) const;
  // The next transaction's steps.
  void next(Transaction& out, Rng& rng) const;

 private:
  ScenarioKind kind_;
  Protocol protocol_;
  int64_t accounts_;  // 100000 * scale
  int64_t tellers_;   // 10 * scale
  int64_t branches_;  // scale
  std::string hold_sql_;
  std::string file_sql_;
};

// The SQL that `pgbench -i -I dtGvp -s scale` runs, one statement each.
std::vector<std::string> init_statements(int scale);

}  // namespace pgmux::bench
