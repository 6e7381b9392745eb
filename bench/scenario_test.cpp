#include "bench/scenario.h"

#include <doctest/doctest.h>

#include <string>

namespace pgmux::bench {
namespace {

Options with(ScenarioKind kind, Protocol protocol = Protocol::kSimple) {
  Options o;
  o.scenario = kind;
  o.protocol = protocol;
  return o;
}

}  // namespace

TEST_CASE("rng stays in range and covers both ends") {
  Rng rng(1);
  bool low = false;
  bool high = false;
  for (int i = 0; i < 10000; ++i) {
    const int64_t v = rng.between(-2, 2);
    CHECK(v >= -2);
    CHECK(v <= 2);
    low |= v == -2;
    high |= v == 2;
  }
  CHECK(low);
  CHECK(high);
}

TEST_CASE("select, simple protocol: a literal aid within the scale") {
  Scenario s(with(ScenarioKind::kSelect), 2, "");
  Rng rng(7);
  Transaction t;
  s.setup(t);
  CHECK(t.steps.empty());
  for (int i = 0; i < 100; ++i) {
    s.next(t, rng);
    REQUIRE(t.steps.size() == 1);
    CHECK(t.steps[0].kind == Step::Kind::kQuery);
    const std::string prefix = "SELECT abalance FROM pgbench_accounts WHERE aid = ";
    REQUIRE(t.steps[0].sql.starts_with(prefix));
    const long aid = std::stol(t.steps[0].sql.substr(prefix.size()));
    CHECK(aid >= 1);
    CHECK(aid <= 200000);
  }
}

TEST_CASE("select, extended protocol: $1 and one parameter") {
  Scenario s(with(ScenarioKind::kSelect, Protocol::kExtended), 1, "");
  Rng rng(7);
  Transaction t;
  s.next(t, rng);
  REQUIRE(t.steps.size() == 1);
  CHECK(t.steps[0].kind == Step::Kind::kParams);
  CHECK(t.steps[0].sql == "SELECT abalance FROM pgbench_accounts WHERE aid = $1");
  CHECK(t.steps[0].param_count == 1);
  CHECK(std::stol(t.steps[0].params[0]) <= 100000);
}

TEST_CASE("prepared: PREPARE once as setup, then the named statement") {
  Scenario s(with(ScenarioKind::kPrepared), 1, "");
  Rng rng(7);
  Transaction setup;
  s.setup(setup);
  REQUIRE(setup.steps.size() == 1);
  CHECK(setup.steps[0].kind == Step::Kind::kPrepare);
  CHECK(setup.steps[0].sql.find("$1") != std::string::npos);
  Transaction t;
  s.next(t, rng);
  REQUIRE(t.steps.size() == 1);
  CHECK(t.steps[0].kind == Step::Kind::kPrepared);
  CHECK(std::string(t.steps[0].name) == setup.steps[0].name);
  CHECK(t.steps[0].param_count == 1);
}

TEST_CASE("tpcb: pgbench's seven statements inside BEGIN .. END") {
  Scenario s(with(ScenarioKind::kTpcb), 1, "");
  Rng rng(3);
  Transaction t;
  s.next(t, rng);
  REQUIRE(t.steps.size() == 7);
  CHECK(t.explicit_block);
  CHECK(t.steps[0].sql == "BEGIN");
  CHECK(t.steps[1].sql.starts_with("UPDATE pgbench_accounts SET abalance = abalance + "));
  CHECK(t.steps[1].sql.find('$') == std::string::npos);
  CHECK(t.steps[2].sql.starts_with("SELECT abalance FROM pgbench_accounts WHERE aid = "));
  CHECK(t.steps[3].sql.starts_with("UPDATE pgbench_tellers"));
  CHECK(t.steps[4].sql.starts_with("UPDATE pgbench_branches"));
  CHECK(t.steps[5].sql.starts_with("INSERT INTO pgbench_history"));
  CHECK(t.steps[6].sql == "END");

  Scenario e(with(ScenarioKind::kTpcb, Protocol::kExtended), 1, "");
  e.next(t, rng);
  CHECK(t.steps[1].kind == Step::Kind::kParams);
  CHECK(t.steps[1].param_count == 2);
  CHECK(t.steps[5].param_count == 4);
  CHECK(t.steps[5].sql.find("$4") != std::string::npos);
}

TEST_CASE("hold, churn, file and idle") {
  Options hold = with(ScenarioKind::kHold);
  hold.hold_ms = 250;
  Rng rng(1);
  Transaction t;
  Scenario(hold, 1, "").next(t, rng);
  REQUIRE(t.steps.size() == 3);
  CHECK(t.steps[1].sql == "SELECT pg_sleep(0.250)");
  CHECK(t.steps[2].sql == "COMMIT");

  Scenario churn(with(ScenarioKind::kChurn), 1, "");
  CHECK(churn.connects_per_transaction());
  churn.next(t, rng);
  CHECK(t.steps[0].sql == "SELECT 1");

  Scenario file(with(ScenarioKind::kFile), 1, "SELECT 1; SELECT 2;\n");
  file.next(t, rng);
  REQUIRE(t.steps.size() == 1);
  CHECK(t.steps[0].sql == "SELECT 1; SELECT 2;\n");

  Scenario idle(with(ScenarioKind::kIdle), 1, "");
  CHECK_FALSE(idle.runs_transactions());
  CHECK(Scenario::needs_scale(ScenarioKind::kSelect));
  CHECK_FALSE(Scenario::needs_scale(ScenarioKind::kHold));
}

TEST_CASE("init statements scale the row counts") {
  const auto sql = init_statements(3);
  bool accounts = false;
  for (const std::string& s : sql)
    accounts |= s.find("generate_series(1, 3 * 100000)") != std::string::npos;
  CHECK(accounts);
  CHECK(sql.front().starts_with("DROP TABLE IF EXISTS"));
}

}  // namespace pgmux::bench
