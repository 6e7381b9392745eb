// The pgmux binary under real signals: SIGTERM drains at transaction
// boundaries, SIGINT waits for servers, a second signal stops at once,
// shutdown_timeout ends a drain, SIGHUP reloads (and keeps the running
// configuration when the new one is broken), and so_reuseport lets a second
// pgmux take over the port with no failed transaction.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/pgmux_process.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Its own PostgreSQL, so pg_stat_activity shows only this file's backends.
PgServer& lifecycle_pg() {
  static PgServer pg;
  return pg;
}

// A PgmuxProcess on lifecycle_pg(): `extra` is TOML put before the
// [databases] table; the process listens on `port` (a free one when 0).
class LifecyclePgmux : public PgmuxProcess {
 public:
  explicit LifecyclePgmux(const std::string& extra, uint16_t port = 0,
                          const std::string& users = "")
      : PgmuxProcess(port) {
    write_config(extra, users);
    start();
  }

  void write_config(const std::string& extra, const std::string& users) {
    const PgServer& pg = lifecycle_pg();
    write_raw_config("listen = \"127.0.0.1:" + std::to_string(port()) +
                     "\"\n"
                     "min_server_connections = 0\n"
                     "auth_failure_delay = \"10ms\"\n" +
                     extra + "\n[databases.app]\nurl = \"" + pg.url(kScramUser, kScramPassword) +
                     "?application_name=lifecycle\"\n" + users);
  }
  // The listen line, then `databases` (name, application_name) on the test's
  // PostgreSQL.
  void write_databases(const std::vector<std::pair<std::string, std::string>>& databases) {
    std::string text = "listen = \"127.0.0.1:" + std::to_string(port()) + "\"\n";
    text += "min_server_connections = 0\n";
    for (const auto& [name, application_name] : databases) {
      text += "[databases." + name + "]\nurl = \"" +
              lifecycle_pg().url(kScramUser, kScramPassword) +
              "?application_name=" + application_name + "\"\n";
    }
    write_raw_config(text);
  }
};

bool connect_refused(const PgmuxProcess& p) {
  return PQping(p.conninfo().c_str()) == PQPING_NO_RESPONSE;
}

void wait_refused(const PgmuxProcess& p) {
  const auto deadline = Clock::now() + 5s;
  while (!connect_refused(p)) {
    REQUIRE(Clock::now() < deadline);
    std::this_thread::sleep_for(10ms);
  }
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
    if (error.size() < 8) error += "failed";
  }
  PQclear(r);
  return error;
}

// Ended by pgmux with 57P01: the SQLSTATE, or libpq's report of the FATAL.
bool ended_by_admin(const std::string& error) {
  return error.rfind("57P01", 0) == 0 ||
         error.find("terminating connection due to administrator command") != std::string::npos;
}

// A connection that records the SQLSTATE of every error libpq reports
// outside a query: a FATAL that arrives while the client is idle is one
// (libpq hands it to the notice receiver), and when the client's next query
// races with the close, that query may only see "server closed the
// connection unexpectedly".
struct Client {
  Conn conn;
  std::string async_codes;
  explicit Client(const std::string& conninfo) : conn(conninfo) {
    PQsetNoticeReceiver(
        conn.raw,
        [](void* arg, const PGresult* r) {
          const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
          if (code != nullptr) *static_cast<std::string*>(arg) += std::string(code) + " ";
        },
        &async_codes);
  }
  // Waits until pgmux closes the connection on its own (reading what it
  // sends meanwhile), then checks it said 57P01 and the next query fails.
  // Waiting first keeps the query from racing with the close: a query sent
  // to a closed socket draws a reset, which may discard the FATAL unread.
  bool ended_by_admin_now() {
    const auto deadline = Clock::now() + 5s;
    while (PQconsumeInput(conn.raw) == 1) {
      if (Clock::now() >= deadline) return false;
      pollfd fd{PQsocket(conn.raw), POLLIN, 0};
      ::poll(&fd, 1, 100);
    }
    const std::string error = exec_error(conn.raw, "select 1");
    INFO(error);
    return !error.empty() &&
           (ended_by_admin(error) || async_codes.find("57P01") != std::string::npos);
  }
};

TEST_CASE("SIGTERM drains: open transactions commit, then every client gets 57P01; exit 0") {
  LifecyclePgmux pgmux("shutdown_timeout = \"20s\"");
  pgmux.wait_ready();
  std::vector<std::unique_ptr<Client>> in_tx, idle;
  for (int i = 0; i < 4; ++i) {
    in_tx.push_back(std::make_unique<Client>(pgmux.conninfo()));
    REQUIRE(in_tx.back()->conn.ok());
    REQUIRE(exec_error(in_tx.back()->conn.raw, "begin") == "");
    REQUIRE(exec_error(in_tx.back()->conn.raw, "select 1") == "");
    idle.push_back(std::make_unique<Client>(pgmux.conninfo()));
    REQUIRE(idle.back()->conn.ok());
    REQUIRE(exec_error(idle.back()->conn.raw, "select 1") == "");
  }
  const auto signalled = Clock::now();
  pgmux.signal(SIGTERM);
  wait_refused(pgmux);  // The listener closes with the signal.
  for (auto& c : idle) CHECK(c->ended_by_admin_now());
  for (auto& c : in_tx) {
    CHECK(exec_error(c->conn.raw, "select 2") == "");
    CHECK(exec_error(c->conn.raw, "commit") == "");
    CHECK(c->ended_by_admin_now());
  }
  REQUIRE(pgmux.wait_exit(10s));
  CHECK(Clock::now() - signalled < 10s);  // Well before shutdown_timeout.
  const std::string log = pgmux.log();
  INFO(log);
  CHECK(pgmux.exited_cleanly());
  // 8 clients, and perhaps the probe of wait_refused that got in first.
  CHECK(log.find("shutdown WAIT_FOR_CLIENTS: no longer accepting connections; ") !=
        std::string::npos);
  CHECK(log.find(" clients, 4 servers in a transaction") != std::string::npos);
  CHECK(log.find("every client has left") != std::string::npos);
}

TEST_CASE("busy_poll_us: queries, timers and a SIGTERM drain work while the loop polls") {
  LifecyclePgmux pgmux("busy_poll_us = 50\nshutdown_timeout = \"20s\"");
  pgmux.wait_ready();
  REQUIRE(pgmux.wait_log("busy polling: the loop polls for 50 us after each read"));
  Client idle(pgmux.conninfo());
  Client busy(pgmux.conninfo());
  REQUIRE(idle.conn.ok());
  REQUIRE(busy.conn.ok());
  for (int i = 0; i < 200; ++i) {
    REQUIRE(exec_error(busy.conn.raw, ("select " + std::to_string(i)).c_str()) == "");
  }
  REQUIRE(exec_error(idle.conn.raw, "begin") == "");
  REQUIRE(exec_error(idle.conn.raw, "select 1") == "");
  pgmux.signal(SIGTERM);
  CHECK(busy.ended_by_admin_now());
  // The open transaction still runs to its end, then the drain completes.
  CHECK(exec_error(idle.conn.raw, "commit") == "");
  CHECK(idle.ended_by_admin_now());
  REQUIRE(pgmux.wait_exit(10s));
  INFO(pgmux.log());
  CHECK(pgmux.exited_cleanly());
}

TEST_CASE("SIGTERM: shutdown_timeout ends a drain that a transaction holds open") {
  LifecyclePgmux pgmux("shutdown_timeout = \"1s\"");
  pgmux.wait_ready();
  Conn c(pgmux.conninfo());
  REQUIRE(c.ok());
  REQUIRE(exec_error(c.raw, "begin") == "");
  pgmux.signal(SIGTERM);
  REQUIRE(pgmux.wait_exit(10s));
  const std::string log = pgmux.log();
  INFO(log);
  CHECK(pgmux.exited_cleanly());
  CHECK(log.find("shutdown_timeout reached with 1 clients left") != std::string::npos);
}

TEST_CASE("SIGINT waits for servers; a second signal stops at once") {
  SUBCASE("SIGINT: exits when the last transaction ends") {
    LifecyclePgmux pgmux("shutdown_timeout = \"20s\"");
    pgmux.wait_ready();
    Conn busy(pgmux.conninfo());
    Conn idle(pgmux.conninfo());
    REQUIRE(busy.ok());
    REQUIRE(idle.ok());
    REQUIRE(exec_error(busy.raw, "begin") == "");
    REQUIRE(exec_error(idle.raw, "select 1") == "");
    pgmux.signal(SIGINT);
    wait_refused(pgmux);
    CHECK_FALSE(pgmux.exited());  // A server is still in a transaction.
    CHECK(exec_error(busy.raw, "select 2") == "");
    CHECK(exec_error(busy.raw, "commit") == "");
    REQUIRE(pgmux.wait_exit(10s));
    const std::string log = pgmux.log();
    INFO(log);
    CHECK(pgmux.exited_cleanly());
    CHECK(log.find("no server is in a transaction; stopping, closing 2 clients") !=
          std::string::npos);
    CHECK(exec_error(idle.raw, "select 1") != "");
  }
  SUBCASE("SIGTERM, then SIGINT during the drain") {
    LifecyclePgmux pgmux("shutdown_timeout = \"30s\"");
    pgmux.wait_ready();
    Conn busy(pgmux.conninfo());
    REQUIRE(busy.ok());
    REQUIRE(exec_error(busy.raw, "begin") == "");
    pgmux.signal(SIGTERM);
    REQUIRE(pgmux.wait_log("shutdown WAIT_FOR_CLIENTS"));
    pgmux.signal(SIGINT);
    REQUIRE(pgmux.wait_exit(10s));
    const std::string log = pgmux.log();
    INFO(log);
    CHECK(pgmux.exited_cleanly());
    CHECK(log.find("a second request while draining: stopping now") != std::string::npos);
    CHECK(exec_error(busy.raw, "commit") != "");
  }
}

// Backends pgmux holds open on the upstream now.
int upstream_backends() {
  return std::stoi(lifecycle_pg().query_value(
      "select count(*) from pg_stat_activity where application_name = 'lifecycle'"));
}

// `clients` connections each run pg_sleep(`seconds`) at the same time; returns
// the most backends seen while they ran.
int peak_backends(const PgmuxProcess& pgmux, const std::string& password, int clients,
                  double seconds) {
  std::vector<std::unique_ptr<Conn>> conns;
  for (int i = 0; i < clients; ++i) {
    conns.push_back(std::make_unique<Conn>(pgmux.conninfo("alice", password)));
    REQUIRE(conns.back()->ok());
  }
  const std::string sql = "select pg_sleep(" + std::to_string(seconds) + ")";
  for (auto& c : conns) REQUIRE(PQsendQuery(c->raw, sql.c_str()) == 1);
  int peak = 0;
  const auto until = Clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 800));
  while (Clock::now() < until) peak = std::max(peak, upstream_backends());
  for (auto& c : conns) {
    while (PGresult* r = PQgetResult(c->raw)) {
      CHECK(PQresultStatus(r) == PGRES_TUPLES_OK);
      PQclear(r);
    }
  }
  return peak;
}

TEST_CASE("SIGHUP reloads passwords and the cap; a broken file keeps the running config") {
  const std::string users_one = "[users.alice]\npassword = \"one\"\n";
  const std::string users_two = "[users.alice]\npassword = \"two\"\n";
  LifecyclePgmux pgmux("max_server_connections = 2", 0, users_one);
  pgmux.wait_ready();
  CHECK(peak_backends(pgmux, "one", 5, 0.6) == 2);

  pgmux.write_config("max_server_connections = 4\nlog_level = \"debug\"\nso_reuseport = true",
                     users_two);
  pgmux.signal(SIGHUP);
  REQUIRE(pgmux.wait_log("reload: applied"));
  {
    Conn old_password(pgmux.conninfo("alice", "one"));
    CHECK_FALSE(old_password.ok());
    Conn new_password(pgmux.conninfo("alice", "two"));
    CHECK(new_password.ok());
  }
  CHECK(peak_backends(pgmux, "two", 5, 0.6) == 4);
  CHECK(pgmux.log().find("reload: so_reuseport changed; it takes effect only after a restart") !=
        std::string::npos);

  pgmux.write_raw_config("listen = [broken\n");
  pgmux.signal(SIGHUP);
  REQUIRE(pgmux.wait_log("reload: the new configuration is rejected, the running one stays"));
  Conn after(pgmux.conninfo("alice", "two"));
  CHECK(after.ok());
  CHECK(exec_error(after.raw, "select 1") == "");
  const std::string log = pgmux.log();
  CHECK(log.find("\"two\"") == std::string::npos);
  CHECK(log.find("\"one\"") == std::string::npos);
  pgmux.signal(SIGTERM);
}

int backends_named(const std::string& application_name) {
  return std::stoi(lifecycle_pg().query_value(
      "select count(*) from pg_stat_activity where application_name = '" + application_name + "'"));
}

TEST_CASE("SIGHUP: a database added, one removed, one with new connection settings") {
  LifecyclePgmux pgmux("");
  pgmux.wait_ready();  // Signal handlers are in place.
  pgmux.write_databases({{"app", "lifecycle_a"}, {"old", "lifecycle_old"}});
  pgmux.signal(SIGHUP);
  REQUIRE(pgmux.wait_log("reload: applied"));
  Conn app(pgmux.conninfo());
  Conn old(pgmux.conninfo(kScramUser, kScramPassword, "old"));
  REQUIRE(app.ok());
  REQUIRE(old.ok());
  CHECK(exec_error(app.raw, "select 1") == "");
  CHECK(exec_error(old.raw, "select 1") == "");
  CHECK(backends_named("lifecycle_a") == 1);  // Idle in the pool now.

  pgmux.write_databases({{"app", "lifecycle_b"}, {"fresh", "lifecycle_fresh"}});
  pgmux.signal(SIGHUP);
  REQUIRE(pgmux.wait_log("database \"fresh\" added"));
  // The idle server of the old settings is closed at once.
  const auto deadline = Clock::now() + 5s;
  while (backends_named("lifecycle_a") != 0) {
    REQUIRE(Clock::now() < deadline);
    std::this_thread::sleep_for(10ms);
  }
  CHECK(exec_error(app.raw, "select 1") == "");
  CHECK(backends_named("lifecycle_b") == 1);
  // A removed database serves its connected clients and refuses new ones.
  CHECK(exec_error(old.raw, "select 1") == "");
  Conn refused(pgmux.conninfo(kScramUser, kScramPassword, "old"));
  CHECK_FALSE(refused.ok());
  CHECK(refused.error().find("does not exist") != std::string::npos);
  Conn fresh(pgmux.conninfo(kScramUser, kScramPassword, "fresh"));
  REQUIRE(fresh.ok());
  CHECK(exec_error(fresh.raw, "select 1") == "");
  CHECK(backends_named("lifecycle_fresh") == 1);
  const std::string log = pgmux.log();
  INFO(log);
  CHECK(log.find("database \"old\" removed") != std::string::npos);
  CHECK(log.find("database \"app\": connection settings changed") != std::string::npos);
  CHECK(log.find(kScramPassword) == std::string::npos);
  pgmux.signal(SIGTERM);
  CHECK(pgmux.wait_exit(10s));
}

// A client loop as an application with a reconnecting pool: a connection
// that fails, or a BEGIN that fails (57P01 between transactions), is
// replaced and the transaction retried; only a failure after BEGIN
// succeeded counts as an error.
struct Load {
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<int> committed{0};
  std::atomic<int> reconnects{0};
  std::vector<std::thread> threads;
  std::string last_error;
  std::mutex mutex;

  void run(const std::string& conninfo, int clients) {
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([this, conninfo] {
        std::unique_ptr<Conn> c;
        while (!stop) {
          if (!c || !c->ok()) {
            c = std::make_unique<Conn>(conninfo);
            if (!c->ok()) {
              ++reconnects;
              std::this_thread::sleep_for(5ms);  // Pacing a retry, not synchronising.
              continue;
            }
          }
          if (exec_error(c->raw, "begin") != "") {
            ++reconnects;
            c.reset();
            continue;
          }
          std::string error = exec_error(c->raw, "select count(*) from pg_class");
          if (error.empty()) error = exec_error(c->raw, "commit");
          if (!error.empty()) {
            ++errors;
            std::lock_guard<std::mutex> lock(mutex);
            last_error = error;
            c.reset();
            continue;
          }
          ++committed;
        }
      });
    }
  }
  void join() {
    stop = true;
    for (auto& t : threads) t.join();
  }
};

TEST_CASE("so_reuseport: a second pgmux takes over the port while the first drains") {
  LifecyclePgmux first("so_reuseport = true\nshutdown_timeout = \"10s\"");
  first.wait_ready();
  Load load;
  load.run(first.conninfo(), 6);
  auto wait_committed = [&](int more) {
    const int target = load.committed + more;
    const auto deadline = Clock::now() + 10s;
    while (load.committed < target && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
    return load.committed >= target;
  };
  CHECK(wait_committed(200));
  LifecyclePgmux second("so_reuseport = true\nshutdown_timeout = \"10s\"", first.port());
  REQUIRE(second.wait_log("pgmux listening on"));
  CHECK(wait_committed(200));
  first.signal(SIGTERM);
  REQUIRE(first.wait_exit(10s));
  CHECK(first.exited_cleanly());
  CHECK(wait_committed(300));  // On the second pgmux alone.
  load.join();
  MESSAGE("upgrade: ", load.committed.load(), " transactions committed, ", load.reconnects.load(),
          " reconnects and retries, ", load.errors.load(), " errors");
  INFO(load.last_error);
  INFO(first.log());
  CHECK(load.errors == 0);
  CHECK(load.reconnects >= 6);  // Every client began on the first pgmux and moved.
  CHECK(second.log().find("closing with FATAL") == std::string::npos);
  second.signal(SIGTERM);
  CHECK(second.wait_exit(10s));
  CHECK(second.exited_cleanly());
}

}  // namespace
}  // namespace pgmux::testing

namespace pgmux::testing {
namespace {

TEST_CASE("admin console: RELOAD applies a new file; SHUTDOWN WAIT_FOR_CLIENTS drains") {
  const std::string users = std::string("[users.") + kScramUser + "]\npassword = \"" +
                            kScramPassword + "\"\n[users.ops]\npassword = \"ops-secret\"\n";
  const std::string settings = "admin_users = [\"ops\"]\nshutdown_timeout = \"20s\"\n";
  LifecyclePgmux pgmux(settings, 0, users);
  pgmux.wait_ready();
  Client busy(pgmux.conninfo());
  REQUIRE(busy.conn.ok());
  REQUIRE(exec_error(busy.conn.raw, "begin") == "");
  REQUIRE(exec_error(busy.conn.raw, "select 1") == "");
  Conn admin(pgmux.conninfo("ops", "ops-secret", "pgbouncer"));
  REQUIRE(admin.ok());

  // RELOAD: the console's answer comes after the new file is applied.
  pgmux.write_config(settings + "max_server_connections = 7\n", users);
  CHECK(exec_error(admin.raw, "RELOAD") == "");
  CHECK(pgmux.wait_log("reload: applied: "));
  CHECK(pgmux.log().find("max_server_connections 7,") != std::string::npos);
  // A broken file: RELOAD fails with the reason, and the running one stays.
  pgmux.write_raw_config("max_server_connections = \"many\"\n");
  const std::string broken = exec_error(admin.raw, "RELOAD");
  INFO(broken);
  CHECK(broken.find("RELOAD failed") != std::string::npos);
  CHECK(exec_error(busy.conn.raw, "select 2") == "");

  // SHUTDOWN WAIT_FOR_CLIENTS: as SIGTERM. The transaction in flight commits,
  // then its client gets 57P01; the process exits 0.
  exec_error(admin.raw, "SHUTDOWN WAIT_FOR_CLIENTS");  // Its own session ends too.
  wait_refused(pgmux);
  CHECK(exec_error(busy.conn.raw, "select 3") == "");
  CHECK(exec_error(busy.conn.raw, "commit") == "");
  CHECK(busy.ended_by_admin_now());
  REQUIRE(pgmux.wait_exit(10s));
  INFO(pgmux.log());
  CHECK(pgmux.exited_cleanly());
}

}  // namespace
}  // namespace pgmux::testing

namespace pgmux::testing {
namespace {

// GET `path` from 127.0.0.1:`port`; the status code, or 0 when no answer.
int http_status(uint16_t port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET " + path + " HTTP/1.1\r\nConnection: close\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char chunk[1024];
      ssize_t n = 0;
      while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) {
        response.append(chunk, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  if (response.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::atoi(response.c_str() + 9);
}

TEST_CASE("SIGTERM: /readyz turns 503 at once while /healthz stays 200 through the drain") {
  const uint16_t metrics_port = free_port();
  LifecyclePgmux pgmux("shutdown_timeout = \"20s\"\nmetrics_listen = \"127.0.0.1:" +
                       std::to_string(metrics_port) + "\"\n");
  pgmux.wait_ready();
  Client busy(pgmux.conninfo());
  REQUIRE(busy.conn.ok());
  REQUIRE(exec_error(busy.conn.raw, "begin") == "");
  // Ready once the upstream has been reached (the login just did).
  const auto deadline = Clock::now() + 10s;
  while (http_status(metrics_port, "/readyz") != 200) {
    REQUIRE(Clock::now() < deadline);
    std::this_thread::sleep_for(20ms);
  }
  pgmux.signal(SIGTERM);
  wait_refused(pgmux);
  CHECK(http_status(metrics_port, "/readyz") == 503);
  CHECK(http_status(metrics_port, "/healthz") == 200);
  CHECK(exec_error(busy.conn.raw, "commit") == "");
  CHECK(busy.ended_by_admin_now());
  REQUIRE(pgmux.wait_exit(10s));
  CHECK(pgmux.exited_cleanly());
}

}  // namespace
}  // namespace pgmux::testing
