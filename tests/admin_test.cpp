// The admin console end to end: psql and libpq against the virtual database
// "pgbouncer", the values its SHOW tables report after known traffic, the
// commands (PAUSE, RESUME, KILL), roles, malformed input, and Debian 12's
// prometheus-pgbouncer-exporter reading pgmux as if it were PgBouncer.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
using Row = std::map<std::string, std::string>;

constexpr const char* kAdminUser = "ops_admin";
constexpr const char* kAdminPassword = "ops-admin-secret";
constexpr const char* kStatsUser = "ops_stats";
constexpr const char* kStatsPassword = "ops-stats-secret";

PgServer& admin_pg() {
  static PgServer pg;
  return pg;
}

// Two server connections, an admin and a stats user besides the app's own.
config::Config admin_config(uint32_t servers = 2) {
  config::Config config = make_small_config(admin_pg(), servers);
  config.users = {config::User{kScramUser, kScramPassword, {}},
                  config::User{kAdminUser, kAdminPassword, {}},
                  config::User{kStatsUser, kStatsPassword, {}}};
  config.admin_users = {kAdminUser};
  config.stats_users = {kStatsUser};
  return config;
}

std::string admin_conninfo(const ProxyRunner& proxy, const char* user = kAdminUser,
                           const char* password = kAdminPassword) {
  return proxy.conninfo(user, "pgbouncer", password);
}

// Runs a console command; the rows by column name, or throws with the error.
std::vector<Row> show(Conn& c, const std::string& command) {
  PGresult* r = PQexec(c.raw, command.c_str());
  std::vector<Row> rows;
  const ExecStatusType status = PQresultStatus(r);
  const std::string error = PQresultErrorMessage(r);
  if (status == PGRES_TUPLES_OK) {
    for (int i = 0; i < PQntuples(r); ++i) {
      Row row;
      for (int j = 0; j < PQnfields(r); ++j) row[PQfname(r, j)] = PQgetvalue(r, i, j);
      rows.push_back(std::move(row));
    }
  }
  PQclear(r);
  if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
    throw std::runtime_error(command + ": " + error);
  }
  return rows;
}

Row row_for(Conn& c, const std::string& command, const std::string& key, const std::string& value) {
  for (Row& row : show(c, command)) {
    if (row[key] == value) return row;
  }
  return {};
}

// The SQLSTATE a command fails with ("" if it succeeds).
std::string sqlstate_of(Conn& c, const std::string& command) {
  PGresult* r = PQexec(c.raw, command.c_str());
  const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  std::string out = code != nullptr ? code : "";
  PQclear(r);
  return out;
}

long number(const Row& row, const std::string& column) {
  auto it = row.find(column);
  REQUIRE_MESSAGE(it != row.end(), "no column " << column);
  return std::stol(it->second);
}

// Polls `command` until `done(row for database app)` or 10 s pass.
template <class Done>
Row poll_app_row(Conn& admin, const std::string& command, const std::string& key, Done done) {
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  Row row = row_for(admin, command, key, kAppDatabase);
  while (!done(row) && Clock::now() < deadline) row = row_for(admin, command, key, kAppDatabase);
  return row;
}

TEST_CASE("admin console: psql shows every table with PgBouncer's column headers") {
  ProxyRunner proxy(admin_config());
  Conn app(proxy.conninfo());
  REQUIRE(app.ok());
  CHECK(app.value("select 1") == "1");
  const std::string url = "postgresql://" + std::string(kAdminUser) + ":" + kAdminPassword +
                          "@127.0.0.1:" + std::to_string(proxy.port()) + "/pgbouncer";
  std::string command = "psql -X -v ON_ERROR_STOP=1 '" + url + "'";
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"SHOW POOLS", "cl_waiting"},
      {"SHOW STATS", "total_xact_count"},
      {"SHOW STATS_TOTALS", "xact_count"},
      {"SHOW STATS_AVERAGES", "bytes_received"},
      {"SHOW DATABASES", "reserve_pool"},
      {"SHOW LISTS", "items"},
      {"SHOW CLIENTS", "application_name"},
      {"SHOW SERVERS", "remote_pid"},
      {"SHOW CONFIG", "changeable"},
      {"SHOW VERSION", "version"},
      {"SHOW STATE", "value"},
      {"SHOW USERS", "pool_size"},
      {"SHOW PGMUX", "queue_timeouts"},
      {"show pools;", "sv_active"},
  };
  for (const auto& [sql, header] : expected) command += " -c '" + sql + "'";
  const CommandResult r = run_command(command + " 2>&1");
  CHECK_MESSAGE(r.status == 0, r.output);
  for (const auto& [sql, header] : expected) {
    CHECK_MESSAGE(r.output.find(header) != std::string::npos, sql << " lacks " << header);
  }
  CHECK(r.output.find("PgBouncer 1.24.0") != std::string::npos);
  // SHOW CONFIG never shows a password.
  CHECK(r.output.find(kScramPassword) == std::string::npos);
  CHECK(r.output.find(kAdminPassword) == std::string::npos);
}

TEST_CASE("admin console: SHOW STATS counts known transactions; SHOW POOLS sees a queue") {
  ProxyRunner proxy(admin_config());
  Conn admin(admin_conninfo(proxy));
  REQUIRE_MESSAGE(admin.ok(), admin.error());
  const Row before = row_for(admin, "SHOW STATS", "database", kAppDatabase);
  REQUIRE(!before.empty());

  constexpr int kTransactions = 20;
  {
    Conn app(proxy.conninfo());
    REQUIRE(app.ok());
    for (int i = 0; i < kTransactions; ++i) CHECK(app.value("select " + std::to_string(i)) != "");
  }
  const Row after = poll_app_row(admin, "SHOW STATS", "database", [&](const Row& row) {
    return number(row, "total_xact_count") - number(before, "total_xact_count") >= kTransactions;
  });
  CHECK(number(after, "total_xact_count") - number(before, "total_xact_count") >= kTransactions);
  CHECK(number(after, "total_query_count") >= kTransactions);
  CHECK(number(after, "total_requests") == number(after, "total_query_count"));
  CHECK(number(after, "total_received") > 0);
  CHECK(number(after, "total_sent") > 0);
  CHECK(number(after, "total_server_assignment_count") >= kTransactions);
  const Row totals = row_for(admin, "SHOW STATS_TOTALS", "database", kAppDatabase);
  CHECK(number(totals, "xact_count") >= number(after, "total_xact_count"));

  // Both servers held in open transactions; one more client queues.
  Conn holder1(proxy.conninfo());
  Conn holder2(proxy.conninfo());
  Conn waiter(proxy.conninfo());
  REQUIRE(holder1.ok());
  REQUIRE(holder2.ok());
  REQUIRE(waiter.ok());
  holder1.value("begin");
  holder2.value("begin");
  REQUIRE(PQsendQuery(waiter.raw, "select 42") == 1);
  const Row queued = poll_app_row(admin, "SHOW POOLS", "database",
                                  [](const Row& row) { return number(row, "cl_waiting") > 0; });
  CHECK(number(queued, "cl_waiting") == 1);
  CHECK(number(queued, "sv_active") == 2);
  CHECK(number(queued, "cl_active") >= 2);
  CHECK(queued.at("pool_mode") == "transaction");
  const Row lists = row_for(admin, "SHOW LISTS", "list", "used_clients");
  CHECK(number(lists, "items") >= 4);  // Three app clients and the admin.
  bool waiting_client = false;
  for (Row& row : show(admin, "SHOW CLIENTS")) {
    if (row["state"] == "waiting" && row["database"] == kAppDatabase) waiting_client = true;
  }
  CHECK(waiting_client);
  CHECK(show(admin, "SHOW SERVERS").size() == 2);

  holder1.value("commit");
  PGresult* r = PQgetResult(waiter.raw);
  CHECK(std::string(PQgetvalue(r, 0, 0)) == "42");
  PQclear(r);
  while ((r = PQgetResult(waiter.raw)) != nullptr) PQclear(r);
  holder2.value("commit");
}

TEST_CASE("admin console: roles, unknown commands and SET") {
  ProxyRunner proxy(admin_config());
  // Not in admin_users or stats_users: refused at login.
  Conn app_user(admin_conninfo(proxy, kScramUser, kScramPassword));
  CHECK_FALSE(app_user.ok());
  CHECK(app_user.error().find("may not use the admin console") != std::string::npos);

  Conn stats(admin_conninfo(proxy, kStatsUser, kStatsPassword));
  REQUIRE_MESSAGE(stats.ok(), stats.error());
  CHECK(sqlstate_of(stats, "PAUSE") == "42501");
  CHECK(sqlstate_of(stats, "KILL app") == "42501");
  CHECK(show(stats, "SHOW VERSION").size() == 1);

  Conn admin(admin_conninfo(proxy));
  REQUIRE(admin.ok());
  CHECK(sqlstate_of(admin, "SELECT 1") == "42601");
  CHECK(sqlstate_of(admin, "SHOW NOTHING") == "42704");
  CHECK(sqlstate_of(admin, "SHOW POOLS; SHOW STATS") == "42601");
  CHECK(sqlstate_of(admin, "PAUSE nope") == "3D000");
  CHECK(sqlstate_of(admin, "SET client_encoding = 'UTF8'").empty());
  CHECK(sqlstate_of(admin, "SET work_mem = '1GB'") == "42704");
  // The connection stays usable after each error.
  CHECK(show(admin, "SHOW VERSION").at(0).at("version").find("PgBouncer") != std::string::npos);
  CHECK(PQparameterStatus(admin.raw, "server_version") == std::string("1.24.0/pgmux"));
}

TEST_CASE("admin console: PAUSE waits for busy servers and holds new work; RESUME releases it") {
  ProxyRunner proxy(admin_config());
  Conn admin(admin_conninfo(proxy));
  Conn watcher(admin_conninfo(proxy));
  Conn holder(proxy.conninfo());
  Conn app(proxy.conninfo());
  REQUIRE(admin.ok());
  REQUIRE(watcher.ok());
  REQUIRE(holder.ok());
  REQUIRE(app.ok());
  holder.value("begin");
  CHECK(holder.value("select 5") == "5");

  // PAUSE answers only once the busy server is released and closed.
  REQUIRE(PQsendQuery(admin.raw, "PAUSE app") == 1);
  const Row paused = poll_app_row(watcher, "SHOW DATABASES", "name",
                                  [](const Row& row) { return number(row, "paused") == 1; });
  CHECK(number(paused, "paused") == 1);
  CHECK(row_for(watcher, "SHOW STATE", "key", "paused").at("value") == "yes");
  REQUIRE(PQconsumeInput(admin.raw) == 1);
  CHECK(PQisBusy(admin.raw) == 1);
  holder.value("commit");
  PGresult* r = PQgetResult(admin.raw);
  CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
  CHECK(std::string(PQcmdStatus(r)) == "PAUSE");
  PQclear(r);
  while ((r = PQgetResult(admin.raw)) != nullptr) PQclear(r);
  CHECK(number(row_for(watcher, "SHOW POOLS", "database", kAppDatabase), "sv_idle") == 0);

  // New work queues while paused.
  REQUIRE(PQsendQuery(app.raw, "select 99") == 1);
  const Row queued = poll_app_row(watcher, "SHOW POOLS", "database",
                                  [](const Row& row) { return number(row, "cl_waiting") == 1; });
  CHECK(number(queued, "cl_waiting") == 1);
  REQUIRE(PQconsumeInput(app.raw) == 1);
  CHECK(PQisBusy(app.raw) == 1);

  show(admin, "RESUME");
  r = PQgetResult(app.raw);
  CHECK(std::string(PQgetvalue(r, 0, 0)) == "99");
  PQclear(r);
  while ((r = PQgetResult(app.raw)) != nullptr) PQclear(r);
  CHECK(row_for(watcher, "SHOW STATE", "key", "paused").at("value") == "no");
  show(admin, "RECONNECT");
  show(admin, "WAIT_CLOSE app");
  CHECK(app.value("select 3") == "3");
}

TEST_CASE("admin console: RECONNECT marks busy servers; WAIT_CLOSE answers once they are gone") {
  ProxyRunner proxy(admin_config());
  Conn admin(admin_conninfo(proxy));
  Conn watcher(admin_conninfo(proxy));
  Conn holder(proxy.conninfo());
  REQUIRE(admin.ok());
  REQUIRE(watcher.ok());
  REQUIRE(holder.ok());
  holder.value("begin");
  const std::string pid = holder.value("select pg_backend_pid()");
  show(admin, "RECONNECT app");
  std::vector<Row> servers = show(watcher, "SHOW SERVERS");
  REQUIRE(servers.size() == 1);
  CHECK(servers[0]["close_needed"] == "1");
  CHECK(servers[0]["remote_pid"] == pid);
  CHECK(number(row_for(watcher, "SHOW PGMUX", "database", kAppDatabase), "stale_servers") == 1);

  REQUIRE(PQsendQuery(admin.raw, "WAIT_CLOSE") == 1);
  REQUIRE(PQconsumeInput(admin.raw) == 1);
  CHECK(PQisBusy(admin.raw) == 1);
  holder.value("commit");
  PGresult* r = PQgetResult(admin.raw);
  CHECK(std::string(PQcmdStatus(r)) == "WAIT_CLOSE");
  PQclear(r);
  while ((r = PQgetResult(admin.raw)) != nullptr) PQclear(r);
  // The next transaction gets a fresh backend.
  CHECK(holder.value("select pg_backend_pid()") != pid);
}

TEST_CASE("admin console: KILL closes the database's clients, which may come back after RESUME") {
  ProxyRunner proxy(admin_config());
  Conn admin(admin_conninfo(proxy));
  Conn victim(proxy.conninfo());
  REQUIRE(admin.ok());
  REQUIRE(victim.ok());
  CHECK(victim.value("select 1") == "1");
  show(admin, "KILL app");
  PGresult* r = PQexec(victim.raw, "select 2");
  CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
  PQclear(r);
  CHECK(PQstatus(victim.raw) == CONNECTION_BAD);
  const Row pool = poll_app_row(admin, "SHOW POOLS", "database",
                                [](const Row& row) { return number(row, "cl_active") == 0; });
  CHECK(number(pool, "cl_active") == 0);
  CHECK(number(row_for(admin, "SHOW DATABASES", "name", kAppDatabase), "paused") == 1);
  show(admin, "RESUME app");
  Conn back(proxy.conninfo());
  REQUIRE(back.ok());
  CHECK(back.value("select 3") == "3");
}

// ---- Raw protocol ------------------------------------------------------------

int connect_to(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// Reads messages until one of type `until` (returns the types seen) or EOF
// (then `closed` is set). `sqlstate` gets the first error's code.
std::string read_messages(int fd, std::string& in, char until, bool* closed,
                          std::string* sqlstate) {
  std::string types;
  for (;;) {
    protocol::ByteView view(reinterpret_cast<const uint8_t*>(in.data()), in.size());
    const protocol::Frame frame = protocol::frame_message(view, 1 << 20);
    if (frame.status == protocol::FrameStatus::kComplete && frame.whole_in(view)) {
      if (frame.type == 'E' && sqlstate->empty()) {
        auto fields = protocol::parse_error_response(view.first(frame.size));
        if (fields) *sqlstate = std::string(fields->sqlstate);
      }
      types += frame.type;
      in.erase(0, frame.size);
      if (frame.type == until) return types;
      continue;
    }
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) {
      *closed = n == 0;
      return types;
    }
    in.append(chunk, static_cast<size_t>(n));
  }
}

TEST_CASE("admin console: extended protocol gets 0A000, malformed input 08P01 and a close") {
  config::Config config = admin_config();
  config.users.clear();  // The drop-in rule, with trust: the raw client speaks no SCRAM.
  config.auth_type = config::AuthType::kTrust;
  config.admin_users = {kScramUser};
  ProxyRunner proxy(config);
  Conn healthy(proxy.conninfo());
  REQUIRE(healthy.ok());
  Conn other_admin(proxy.conninfo(kScramUser, "pgmux"));
  REQUIRE_MESSAGE(other_admin.ok(), other_admin.error());

  const int fd = connect_to(proxy.port());
  protocol::Bytes bytes;
  protocol::append_startup_message(bytes, {{"user", kScramUser}, {"database", "pgbouncer"}});
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) > 0);
  std::string in;
  bool closed = false;
  std::string code;
  const std::string welcome = read_messages(fd, in, 'Z', &closed, &code);
  CHECK(welcome.front() == 'R');
  CHECK(welcome.find('S') != std::string::npos);
  CHECK(welcome.find('K') != std::string::npos);

  // Parse, Bind, Execute, Sync: one error, then ReadyForQuery.
  const std::string parse("P\0\0\0\x12\0SHOW POOLS\0\0\0", 19);
  const std::string bind("B\0\0\0\x0c\0\0\0\0\0\0\0\0", 13);
  const std::string execute("E\0\0\0\x09\0\0\0\0\0", 10);
  const std::string sync("S\0\0\0\x04", 5);
  const std::string batch = parse + bind + execute + sync;
  REQUIRE(::send(fd, batch.data(), batch.size(), MSG_NOSIGNAL) > 0);
  CHECK(read_messages(fd, in, 'Z', &closed, &code) == "EZ");
  CHECK(code == "0A000");
  // A FunctionCall is a request of its own: an error and ReadyForQuery.
  const std::string call("F\0\0\0\x0e\0\0\0\x01\0\0\0\0\0\0", 15);
  REQUIRE(::send(fd, call.data(), call.size(), MSG_NOSIGNAL) > 0);
  code.clear();
  CHECK(read_messages(fd, in, 'Z', &closed, &code) == "EZ");
  CHECK(code == "0A000");

  // A simple query still works on the same connection.
  protocol::Bytes query;
  protocol::append_query(query, "SHOW LISTS");
  REQUIRE(::send(fd, query.data(), query.size(), MSG_NOSIGNAL) > 0);
  code.clear();
  const std::string lists = read_messages(fd, in, 'Z', &closed, &code);
  CHECK(lists.front() == 'T');
  CHECK(lists.substr(lists.size() - 2) == "CZ");
  CHECK(code.empty());

  // A Query whose length field is impossible: 08P01, then the close.
  const std::string garbage("Q\0\0\0\x02", 5);
  REQUIRE(::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL) > 0);
  code.clear();
  read_messages(fd, in, '\0', &closed, &code);
  CHECK(code == "08P01");
  CHECK(closed);
  ::close(fd);

  // A Query without its terminating NUL is malformed too.
  const int fd2 = connect_to(proxy.port());
  REQUIRE(::send(fd2, bytes.data(), bytes.size(), MSG_NOSIGNAL) > 0);
  std::string in2;
  bool closed2 = false;
  std::string code2;
  read_messages(fd2, in2, 'Z', &closed2, &code2);
  const std::string unterminated("Q\0\0\0\x08SHOW", 9);
  REQUIRE(::send(fd2, unterminated.data(), unterminated.size(), MSG_NOSIGNAL) > 0);
  read_messages(fd2, in2, '\0', &closed2, &code2);
  CHECK(code2 == "08P01");
  CHECK(closed2);
  ::close(fd2);

  // Nothing else was affected.
  CHECK(healthy.value("select 7") == "7");
  CHECK(show(other_admin, "SHOW VERSION").size() == 1);
}

// ---- Debian's prometheus-pgbouncer-exporter -----------------------------------

constexpr const char* kExporter = "/usr/bin/prometheus-pgbouncer-exporter";

// GET /metrics; the body when the answer is 200, else "".
std::string fetch_metrics(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    timeval tv{10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) > 0) {
      char chunk[8192];
      ssize_t n;
      while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) {
        response.append(chunk, static_cast<size_t>(n));
      }
    }
  }
  ::close(fd);
  if (response.rfind("HTTP/1.0 200", 0) != 0 && response.rfind("HTTP/1.1 200", 0) != 0) return {};
  const size_t body = response.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : response.substr(body + 4);
}

// The value of the sample whose name and labels are `series`, or -1.
double sample(const std::string& metrics, const std::string& series) {
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return -1;
}

TEST_CASE("admin console: Debian's prometheus-pgbouncer-exporter reads pgmux") {
  if (access(kExporter, X_OK) != 0) {
    MESSAGE("skipped: " << kExporter << " is not installed (scripts/deps installs it)");
    return;
  }
  ProxyRunner proxy(admin_config());
  Conn app1(proxy.conninfo());
  Conn app2(proxy.conninfo());
  REQUIRE(app1.ok());
  REQUIRE(app2.ok());
  for (int i = 0; i < 5; ++i) CHECK(app1.value("select 1") == "1");

  const uint16_t http_port = free_port();
  const std::string log_path =
      (std::filesystem::temp_directory_path() / ("pgmux-exporter-" + std::to_string(getpid())))
          .string();
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    setenv("PGPASSWORD", kStatsPassword, 1);
    const std::string pgbouncer_port = std::to_string(proxy.port());
    const std::string port = std::to_string(http_port);
    execl(kExporter, kExporter, "--host", "127.0.0.1", "--port", port.c_str(), "--pgbouncer-host",
          "127.0.0.1", "--pgbouncer-port", pgbouncer_port.c_str(), "--pgbouncer-user", kStatsUser,
          static_cast<char*>(nullptr));
    _exit(127);
  }

  std::string metrics;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (metrics.empty() && Clock::now() < deadline) {
    int status = 0;
    if (waitpid(child, &status, WNOHANG) == child) break;  // It gave up.
    metrics = fetch_metrics(http_port);
  }
  kill(child, SIGTERM);
  waitpid(child, nullptr, 0);
  std::ifstream log_file(log_path);
  const std::string log((std::istreambuf_iterator<char>(log_file)),
                        std::istreambuf_iterator<char>());
  std::filesystem::remove(log_path);
  REQUIRE_MESSAGE(!metrics.empty(), "the exporter served no metrics; its log:\n" << log);

  const std::string app = "{database=\"app\"}";
  const std::string app_user = "{database=\"app\",user=\"" + std::string(kScramUser) + "\"}";
  CHECK(sample(metrics, "pgbouncer_requests_total" + app) >= 5);
  CHECK(sample(metrics, "pgbouncer_received_bytes_total" + app) > 0);
  CHECK(sample(metrics, "pgbouncer_sent_bytes_total" + app) > 0);
  CHECK(sample(metrics, "pgbouncer_query_microseconds_total" + app) >= 0);
  CHECK(sample(metrics, "pgbouncer_active_clients" + app_user) == 2);
  CHECK(sample(metrics, "pgbouncer_waiting_clients" + app_user) == 0);
  CHECK(sample(metrics, "pgbouncer_pool_size" + app) == 2);
  CHECK(sample(metrics, "pgbouncer_reserve_pool" + app) == 0);
  CHECK(sample(metrics, "pgbouncer_pools") == 1);
  CHECK(sample(metrics, "pgbouncer_used_clients") >= 3);  // Two app clients and the exporter.
}

}  // namespace
}  // namespace pgmux::testing
