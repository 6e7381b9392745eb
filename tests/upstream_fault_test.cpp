// Faults on the upstream side, on a real PostgreSQL, under load from several
// clients: servers terminated while idle or active, the upstream restarted.
// Each test checks that pgmux survives, that only a client whose transaction
// was in flight sees an error (with a clear SQLSTATE), and that the pool's
// counts come back to zero waiting.
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"
#include "tests/raw_client.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Polls `done` until it holds or `limit` passes; true if it held.
template <class Predicate>
bool eventually(Predicate done, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// What one query through pgmux gave.
struct Outcome {
  bool ok = false;
  std::string sqlstate;
  std::string message;
};

Outcome run(PGconn* conn, const char* sql) {
  PGresult* r = PQexec(conn, sql);
  Outcome out;
  const ExecStatusType status = PQresultStatus(r);
  out.ok = status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK;
  if (!out.ok) {
    const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    out.sqlstate = code != nullptr ? code : "";
    out.message = PQerrorMessage(conn);
  }
  PQclear(r);
  return out;
}

// Clients that run short transactions in a loop until stopped, reconnecting
// when pgmux closes them, and record every error by SQLSTATE.
class Load {
 public:
  Load(const ProxyRunner& proxy, int clients) {
    for (int i = 0; i < clients; ++i) {
      threads_.emplace_back([this, conninfo = proxy.conninfo()] { work(conninfo); });
    }
  }
  ~Load() { stop(); }

  void stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  uint64_t successes() const { return successes_; }
  std::map<std::string, int> errors() {
    std::lock_guard<std::mutex> lock(mutex_);
    return errors_;
  }
  std::string error_samples() {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const auto& [code, message] : samples_) out += code + ": " + message + "\n";
    return out;
  }

 private:
  void work(const std::string& conninfo) {
    PGconn* conn = PQconnectdb(conninfo.c_str());
    while (!stop_) {
      if (PQstatus(conn) != CONNECTION_OK) {
        PQfinish(conn);
        conn = PQconnectdb(conninfo.c_str());
        if (PQstatus(conn) != CONNECTION_OK) note("connect", PQerrorMessage(conn));
        continue;
      }
      Outcome o = run(conn, "begin; select count(*) from pg_class; commit");
      if (o.ok) {
        ++successes_;
      } else {
        note(o.sqlstate.empty() ? "none" : o.sqlstate, o.message);
      }
    }
    PQfinish(conn);
  }
  void note(const std::string& code, const std::string& message) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++errors_[code];
    if (samples_.size() < 20) samples_.emplace(code, message);
  }

  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> successes_{0};
  std::mutex mutex_;
  std::map<std::string, int> errors_;
  std::multimap<std::string, std::string> samples_;
  std::vector<std::thread> threads_;
};

// Waits until `load` has made `more` successful transactions.
bool progresses(const Load& load, uint64_t more = 50) {
  const uint64_t start = load.successes();
  return eventually([&] { return load.successes() >= start + more; });
}

TEST_CASE("upstream restarts under load: pgmux survives and serves again, counts return to zero") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.max_server_connections = 10;
  config.min_server_connections = 5;
  config.query_wait_timeout = std::chrono::seconds(60);
  ProxyRunner proxy(config);
  Load load(proxy, 50);
  REQUIRE(progresses(load));
  constexpr int kRestarts = 5;
  for (int i = 0; i < kRestarts; ++i) {
    INFO("restart " << i);
    pg.restart(i % 2 == 0 ? "fast" : "immediate");
    // pg_ctl returned: the upstream accepts again. A new transaction is
    // served within a second (the probe, not the backoff, notices).
    const auto back = Clock::now();
    PGconn* probe = PQconnectdb(proxy.conninfo().c_str());
    REQUIRE(PQstatus(probe) == CONNECTION_OK);
    Outcome first = run(probe, "select 1");
    const auto served = Clock::now() - back;
    PQfinish(probe);
    INFO(first.sqlstate << " " << first.message);
    CHECK(first.ok);
    MESSAGE("served " << std::chrono::duration_cast<std::chrono::milliseconds>(served).count()
                      << " ms after the upstream came back");
    CHECK(served < std::chrono::seconds(1));
    // pgmux is still there and serves every client again.
    REQUIRE(progresses(load, 200));
  }
  load.stop();
  // Transactions in flight at a restart may fail, with the server's own
  // words (57P01, or 08006 from pgmux when it lost the server); a capacity
  // or "shutting down" refusal of pgmux's logins (53300, 57P03) never
  // reaches a client.
  const auto errors = load.errors();
  INFO(load.error_samples());
  for (const auto& [code, count] : errors) {
    INFO(code << " x" << count);
    CHECK((code == "57P01" || code == "08006" || code == "none"));
  }
  CHECK(eventually([&] {
    const auto counts = proxy.pool_counts();
    return counts.waiting == 0 && counts.active == 0 && counts.opening == 0;
  }));
}

// The pids of pgmux's backends, as "1,2,3".
std::string backend_pids(const PgServer& pg) {
  return pg.query_value(std::string("select string_agg(pid::text, ',') from pg_stat_activity "
                                    "where ") +
                        kPgmuxBackendsWhere);
}

// Sends `sql` on every connection without waiting, then collects the
// outcomes: the error texts of those that failed.
std::vector<std::string> send_all_then_collect(std::vector<PGconn*>& conns,
                                               const std::function<void()>& between) {
  for (PGconn* conn : conns) {
    REQUIRE(PQsendQuery(conn, "select 1") == 1);
    REQUIRE(PQflush(conn) == 0);
  }
  between();
  std::vector<std::string> failures;
  for (PGconn* conn : conns) {
    while (PGresult* r = PQgetResult(conn)) {
      if (PQresultStatus(r) != PGRES_TUPLES_OK) failures.push_back(PQresultErrorMessage(r));
      PQclear(r);
    }
  }
  return failures;
}

TEST_CASE("a server that died while idle is never handed out; the request goes to another") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.max_server_connections = 4;
  config.min_server_connections = 4;
  ProxyRunner proxy(config);
  // Each client has its own application_name, so a server attached to it
  // first gets the session sync: two writes in a row to a server that may be
  // dead, the second of which fails once the first drew a reset.
  auto connect = [&](int i) {
    return PQconnectdb((proxy.conninfo() + " application_name=client" + std::to_string(i)).c_str());
  };
  std::vector<PGconn*> conns;
  for (int i = 0; i < 4; ++i) {
    conns.push_back(connect(i));
    REQUIRE(PQstatus(conns.back()) == CONNECTION_OK);
  }
  for (int round = 0; round < 3; ++round) {
    INFO("round " << round);
    REQUIRE(eventually([&] { return proxy.pool_counts().idle == 4; }));
    const std::string pids = backend_pids(pg);
    // The loop is held while the clients' requests arrive and the backends
    // die, so that pgmux sees both at once: the requests first, then the
    // dead servers' FATAL and EOF, still unread, in their sockets.
    std::promise<void> held;
    std::promise<void> release;
    std::thread holder([&] {
      proxy.on_loop([&](proxy::Proxy&) {
        held.set_value();
        release.get_future().wait();
      });
    });
    held.get_future().wait();
    const std::vector<std::string> failures = send_all_then_collect(conns, [&] {
      pg.exec("select pg_terminate_backend(pid) from pg_stat_activity where pid in (" + pids + ")");
      REQUIRE(eventually([&] {
        return pg.query_value("select count(*) from pg_stat_activity where pid in (" + pids +
                              ")") == "0";
      }));
      release.set_value();
      holder.join();
    });
    for (const std::string& failure : failures) CHECK_MESSAGE(false, failure);
    CHECK(failures.empty());
    for (size_t i = 0; i < conns.size(); ++i) {
      if (PQstatus(conns[i]) != CONNECTION_OK) {
        PQfinish(conns[i]);
        conns[i] = connect(static_cast<int>(i));
      }
    }
  }
  for (PGconn* conn : conns) PQfinish(conn);
  CHECK(eventually([&] { return proxy.pool_counts().waiting == 0; }));
}

TEST_CASE("server_check_delay: a server that stopped answering is checked and replaced") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.max_server_connections = 2;
  config.min_server_connections = 2;
  config.server_check_delay = std::chrono::milliseconds(0);  // Check at every hand-out.
  config.server_connect_timeout = std::chrono::seconds(1);
  ProxyRunner proxy(config);
  REQUIRE(eventually([&] { return proxy.pool_counts().idle == 2; }));
  PGconn* conn = PQconnectdb(proxy.conninfo().c_str());
  REQUIRE(PQstatus(conn) == CONNECTION_OK);
  REQUIRE(run(conn, "select 1").ok);
  REQUIRE(eventually([&] { return proxy.pool_counts().idle == 2; }));
  // Both backends stop answering, as behind a network that drops packets:
  // no FATAL, no EOF, just silence.
  const std::string pids = backend_pids(pg);
  std::string list = pids;
  for (char& c : list) c = c == ',' ? ' ' : c;
  REQUIRE(run_command("kill -STOP " + list).status == 0);
  const auto started = Clock::now();
  REQUIRE(PQsendQuery(conn, "select pg_backend_pid()::text") == 1);
  // The answer comes from a new backend, after the checks time out.
  bool answered = eventually(
      [&] {
        if (PQconsumeInput(conn) == 0) return true;
        return PQisBusy(conn) == 0;
      },
      std::chrono::seconds(20));
  run_command("kill -CONT " + list);
  REQUIRE(answered);
  PGresult* r = PQgetResult(conn);
  REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
  const std::string pid = PQgetvalue(r, 0, 0);
  PQclear(r);
  while ((r = PQgetResult(conn)) != nullptr) PQclear(r);
  CHECK(("," + pids + ",").find("," + pid + ",") == std::string::npos);
  MESSAGE("answered after "
          << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()
          << " ms");
  PQfinish(conn);
  CHECK(eventually([&] { return proxy.pool_counts().waiting == 0; }));
}

TEST_CASE("a client that resets its connection while a large result streams to it") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.auth_type = config::AuthType::kTrust;  // RawClient speaks no SCRAM.
  config.max_server_connections = 2;
  config.min_server_connections = 0;
  ProxyRunner proxy(config);
  PGconn* other = PQconnectdb(proxy.conninfo().c_str());
  REQUIRE(PQstatus(other) == CONNECTION_OK);
  for (int i = 0; i < 5; ++i) {
    INFO("round " << i);
    RawClient victim(proxy.port());
    protocol::Bytes query;
    protocol::append_query(query, "select repeat('x', 100000) from generate_series(1, 3000)");
    victim.send_only(query);
    // pgmux is writing to it faster than it reads: a write is queued when
    // the reset arrives, and fails.
    REQUIRE(victim.read_at_least(1 << 20));
    victim.reset();
    // The server that was streaming is closed (its transaction was cut),
    // and the others carry on.
    CHECK(eventually([&] { return proxy.pool_counts().active == 0; }));
    CHECK(run(other, "select 1").ok);
  }
  PQfinish(other);
}

TEST_CASE("active servers terminated: only their clients see an error, the others go on") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.max_server_connections = 6;
  config.min_server_connections = 0;
  ProxyRunner proxy(config);
  Load load(proxy, 20);
  REQUIRE(progresses(load));
  // Three clients hold servers inside transactions that are still running.
  std::vector<PGconn*> victims;
  for (int i = 0; i < 3; ++i) {
    victims.push_back(PQconnectdb(proxy.conninfo().c_str()));
    REQUIRE(PQstatus(victims.back()) == CONNECTION_OK);
    REQUIRE(run(victims.back(), "begin").ok);
    REQUIRE(PQsendQuery(victims.back(), "select pg_sleep(60)") == 1);
  }
  REQUIRE(eventually([&] {
    return pg.query_value(
               "select count(*) from pg_stat_activity where query = 'select "
               "pg_sleep(60)' and state = 'active'") == "3";
  }));
  pg.exec(
      "select pg_terminate_backend(pid) from pg_stat_activity where query = 'select "
      "pg_sleep(60)'");
  for (PGconn* victim : victims) {
    PGresult* r = PQgetResult(victim);
    CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
    const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    CHECK(std::string(code != nullptr ? code : "") == "57P01");
    PQclear(r);
    while ((r = PQgetResult(victim)) != nullptr) PQclear(r);
    PQfinish(victim);
  }
  // The others never noticed.
  REQUIRE(progresses(load));
  load.stop();
  INFO(load.error_samples());
  CHECK(load.errors().empty());
  CHECK(eventually([&] {
    const auto counts = proxy.pool_counts();
    return counts.waiting == 0 && counts.active == 0;
  }));
}

TEST_CASE("the role's CONNECTION LIMIT lowered below the pool under load: no client sees 53300") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.max_server_connections = 8;
  config.min_server_connections = 8;
  config.server_retry_initial = std::chrono::milliseconds(50);
  config.server_retry_max = std::chrono::milliseconds(500);
  config.query_wait_timeout = std::chrono::seconds(60);
  ProxyRunner proxy(config);
  Load load(proxy, 30);
  REQUIRE(progresses(load));
  pg.exec(std::string("alter role ") + kScramUser + " connection limit 3");
  // Every server goes; only 3 can come back. Idle ones are closed without a
  // client noticing; a transaction in flight may fail with 57P01.
  pg.exec(std::string("select pg_terminate_backend(pid) from pg_stat_activity where ") +
          kPgmuxBackendsWhere);
  REQUIRE(progresses(load, 300));
  CHECK(std::stoi(pg.query_value(std::string("select count(*) from pg_stat_activity where ") +
                                 kPgmuxBackendsWhere)) <= 3);
  pg.exec(std::string("alter role ") + kScramUser + " connection limit -1");
  load.stop();
  INFO(load.error_samples());
  for (const auto& [code, count] : load.errors()) {
    INFO(code << " x" << count);
    CHECK((code == "57P01" || code == "08006" || code == "none"));
  }
  CHECK(eventually([&] { return proxy.pool_counts().waiting == 0; }));
}

}  // namespace
}  // namespace pgmux::testing
