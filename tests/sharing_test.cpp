// Three pgmux processes in front of one role with CONNECTION LIMIT 6 share
// its budget (budget_sharing = "adaptive", the default; proxy/upstream.h):
// each alone may take all six (max_server_connections = 6), they start with
// two each (min_server_connections = 2, the whole budget), and the one whose
// clients are busy gets more than its static two, then gives them back when
// the load moves to another instance, with no client error on the way.
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/pgmux_process.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kBudgetRole = "budget";
constexpr const char* kBudgetPassword = "budget-secret";
constexpr int kBudget = 6;       // The role's CONNECTION LIMIT.
constexpr int kStaticShare = 2;  // min_server_connections: 3 x 2 fill the budget.

// Its own PostgreSQL, so pg_stat_activity shows only this file's backends:
// the role `budget` and its databases b1, b2, b3 (one per pgmux).
PgServer& sharing_pg() {
  static PgServer pg;
  static const bool created = [] {
    pg.exec(std::string("CREATE ROLE ") + kBudgetRole + " LOGIN PASSWORD '" + kBudgetPassword +
            "' CONNECTION LIMIT " + std::to_string(kBudget));
    for (const char* db : {"b1", "b2", "b3"}) {
      pg.exec(std::string("CREATE DATABASE ") + db + " OWNER " + kBudgetRole);
    }
    return true;
  }();
  (void)created;
  return pg;
}

// A pgmux whose database `app` is `upstream_db` on sharing_pg(), as the role
// `budget`; clients log in without a password.
std::unique_ptr<PgmuxProcess> start_instance(const std::string& upstream_db) {
  auto p = std::make_unique<PgmuxProcess>();
  p->write_raw_config("listen = \"127.0.0.1:" + std::to_string(p->port()) +
                      "\"\n"
                      "auth_type = \"trust\"\n"
                      "min_server_connections = 2\n"
                      "max_server_connections = 6\n"
                      "query_wait_timeout = \"8s\"\n"
                      "log_level = \"info\"\n"
                      "[databases.app]\nurl = \"" +
                      sharing_pg().url(kBudgetRole, kBudgetPassword, upstream_db) + "\"\n");
  p->start();
  return p;
}

std::string client_conninfo(const PgmuxProcess& p) {
  return p.conninfo(kBudgetRole, kBudgetPassword, "app");
}

// The query's error, or "" when it succeeded.
std::string exec_error(PGconn* conn, const char* sql) {
  PGresult* r = PQexec(conn, sql);
  const ExecStatusType status = PQresultStatus(r);
  std::string error;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    error = std::string(code != nullptr ? code : "-----") + " " + PQresultErrorMessage(r) + " " +
            PQerrorMessage(conn);
  }
  PQclear(r);
  return error;
}

// One client on its own thread: short transactions (BEGIN, pg_sleep 20 ms,
// COMMIT) until stopped. An error is counted and, when the connection is
// lost, ends the client. The counts are read after join().
struct LoadClient {
  std::string name;
  int64_t transactions = 0;
  int64_t errors = 0;
  std::string first_error;
  std::thread thread;

  void run(const std::string& conninfo, const std::atomic<bool>& stop) {
    Conn conn(conninfo);
    if (!conn.ok()) {
      errors = 1;
      first_error = "connect: " + conn.error();
      return;
    }
    while (!stop.load()) {
      std::string error = exec_error(conn.raw, "BEGIN");
      if (error.empty()) error = exec_error(conn.raw, "SELECT pg_sleep(0.02)");
      if (error.empty()) error = exec_error(conn.raw, "COMMIT");
      if (error.empty()) {
        ++transactions;
        continue;
      }
      if (errors++ == 0) first_error = error;
      if (PQstatus(conn.raw) != CONNECTION_OK) return;
      exec_error(conn.raw, "ROLLBACK");
    }
  }
};

// The role's backends per upstream database, from pg_stat_activity (the
// superuser's own connection is not the role's).
class BudgetSampler {
 public:
  BudgetSampler() : conn_(sharing_pg().superuser_conninfo()) { REQUIRE(conn_.ok()); }

  // One sample: per database, and the total; the peaks since reset_peaks().
  // No assertion here (client threads may be running): a failed query is
  // kept in error().
  std::map<std::string, int> sample() {
    PGresult* r = PQexec(conn_.raw,
                         "SELECT datname, count(*) FROM pg_stat_activity WHERE usename = "
                         "'budget' GROUP BY 1");
    std::map<std::string, int> counts;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
      if (error_.empty()) error_ = PQresultErrorMessage(r);
      PQclear(r);
      return counts;
    }
    int total = 0;
    for (int row = 0; row < PQntuples(r); ++row) {
      const int n = std::stoi(PQgetvalue(r, row, 1));
      counts[PQgetvalue(r, row, 0)] = n;
      total += n;
      peaks_[PQgetvalue(r, row, 0)] = std::max(peaks_[PQgetvalue(r, row, 0)], n);
    }
    PQclear(r);
    peak_total_ = std::max(peak_total_, total);
    all_time_peak_total_ = std::max(all_time_peak_total_, total);
    counts["total"] = total;
    return counts;
  }
  void reset_peaks() {
    peaks_.clear();
    peak_total_ = 0;
  }
  int peak(const std::string& db) const {
    const auto it = peaks_.find(db);
    return it == peaks_.end() ? 0 : it->second;
  }
  int peak_total() const { return peak_total_; }
  int all_time_peak_total() const { return all_time_peak_total_; }
  const std::string& error() const { return error_; }
  std::string peaks_text() const {
    std::string text;
    for (const auto& [db, n] : peaks_) text += db + "=" + std::to_string(n) + " ";
    return text + "total=" + std::to_string(peak_total_);
  }

 private:
  Conn conn_;
  std::map<std::string, int> peaks_;
  int peak_total_ = 0;
  int all_time_peak_total_ = 0;
  std::string error_;
};

struct PhaseResult {
  std::vector<std::unique_ptr<LoadClient>> clients;
  std::string peaks;
  int heavy_peak = 0;
};

// Runs `clients[i]` clients on instance i for at least `least`, and on until
// the heavy instance's database has held `want` servers or `most`
// passes, sampling the budget every 20 ms.
PhaseResult run_phase(const std::vector<std::unique_ptr<PgmuxProcess>>& instances,
                      const std::array<int, 3>& clients, const std::string& heavy_db, int want,
                      BudgetSampler& sampler, std::chrono::milliseconds least,
                      std::chrono::milliseconds most) {
  PhaseResult result;
  std::atomic<bool> stop{false};
  sampler.reset_peaks();
  for (size_t i = 0; i < instances.size(); ++i) {
    for (int k = 0; k < clients[i]; ++k) {
      auto client = std::make_unique<LoadClient>();
      client->name = "b" + std::to_string(i + 1) + " client " + std::to_string(k + 1);
      LoadClient* raw = client.get();
      const std::string conninfo = client_conninfo(*instances[i]);
      raw->thread = std::thread([raw, conninfo, &stop] { raw->run(conninfo, stop); });
      result.clients.push_back(std::move(client));
    }
  }
  const auto start = Clock::now();
  while (Clock::now() < start + least ||
         (sampler.peak(heavy_db) < want && Clock::now() < start + most)) {
    sampler.sample();
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  for (auto& client : result.clients) client->thread.join();
  result.peaks = sampler.peaks_text();
  result.heavy_peak = sampler.peak(heavy_db);
  return result;
}

void check_clients(const PhaseResult& phase) {
  for (const auto& client : phase.clients) {
    INFO(client->name << ": " << client->transactions << " transactions, " << client->errors
                      << " errors; first error: " << client->first_error);
    CHECK(client->errors == 0);
    CHECK(client->transactions > 0);
  }
}

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST_CASE(
    "budget sharing: three pgmux processes on a role limited to 6 move servers to the "
    "loaded one, twice, with no client error") {
  sharing_pg();
  std::vector<std::unique_ptr<PgmuxProcess>> instances;
  for (const char* db : {"b1", "b2", "b3"}) instances.push_back(start_instance(db));
  for (auto& p : instances) p->wait_ready(client_conninfo(*p));

  // Warm: two servers each fill the budget.
  BudgetSampler sampler;
  {
    const auto deadline = Clock::now() + 10s;
    std::map<std::string, int> counts = sampler.sample();
    while (counts["total"] < kBudget && Clock::now() < deadline) {
      std::this_thread::sleep_for(20ms);
      counts = sampler.sample();
    }
    INFO(sampler.peaks_text());
    REQUIRE(counts["total"] == kBudget);
  }

  // Phase 1: the load is on b1's pgmux; the other two have one client each.
  // Its static share is two servers; sharing lets it hold more.
  const int want = kStaticShare + 2;
  const PhaseResult first = run_phase(instances, {8, 1, 1}, "b1", want, sampler, 3s, 6s);
  MESSAGE("phase 1 (8 clients on b1) peaks: " << first.peaks);
  check_clients(first);
  CHECK(first.heavy_peak >= want);

  // Phase 2: the load moves to b2's pgmux; b1's gives its servers back.
  const PhaseResult second = run_phase(instances, {1, 8, 1}, "b2", want, sampler, 3s, 6s);
  MESSAGE("phase 2 (8 clients on b2) peaks: " << second.peaks);
  check_clients(second);
  CHECK(second.heavy_peak >= want);

  // PostgreSQL enforces the limit; a sanity check on the sampling.
  CHECK(sampler.error() == "");
  CHECK(sampler.all_time_peak_total() <= kBudget);

  // Every pgmux still runs, and at least one saw the budget shared: a
  // refusal that lowered its limit, or a survey that found it full.
  size_t refusals = 0;
  size_t surveys = 0;
  std::string logs;
  for (size_t i = 0; i < instances.size(); ++i) {
    const std::string log = instances[i]->log();
    CHECK_FALSE(instances[i]->exited());
    refusals += count_of(log, "the upstream budget is full (");
    surveys += count_of(log, "the upstream budget is full and shared");
    logs += "---- b" + std::to_string(i + 1) + "'s pgmux.log\n" + log;
  }
  MESSAGE("log lines: " << refusals << " refusals that lowered a limit, " << surveys
                        << " surveys that found the budget full and shared");
  INFO(logs);
  CHECK(refusals + surveys > 0);
  CHECK(logs.find(kBudgetPassword) == std::string::npos);
}

}  // namespace
}  // namespace pgmux::testing
