// End-to-end tests: real clients (libpq, psql, pgbench) through pgmux to a
// real PostgreSQL 15 that the fixture starts. Acceptance of the core issue.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/pgbench.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kBin = "/usr/lib/postgresql/15/bin/";

// One PostgreSQL for most tests, and one capped at max_connections = 20
// (17 slots for non-superusers), started on first use.
PgServer& shared_pg() {
  static PgServer pg;
  return pg;
}
PgServer& capped_pg() {
  static PgServer pg(PgOptions{.max_connections = 20, .extra_conf = {}});
  return pg;
}

void pgbench_init(const ProxyRunner& proxy) {
  static bool done = false;
  if (done) return;
  CommandResult r = run_command(std::string(kBin) + "pgbench -i -s 2 -q '" + proxy.url() + "'");
  INFO(r.output);
  REQUIRE(r.status == 0);
  done = true;
}

TEST_CASE("pgbench through pgmux: select-only 200 clients simple and extended, TPC-B 50") {
  ProxyRunner proxy(make_config(shared_pg()));
  pgbench_init(proxy);
  run_pgbench("-n -S -c 200 -j 4 -T 4 '" + proxy.url() + "'");
  run_pgbench("-n -S -M extended -c 200 -j 4 -T 4 '" + proxy.url() + "'");
  run_pgbench("-n -c 50 -j 4 -T 4 '" + proxy.url() + "'");
}

TEST_CASE("COPY in and out of 100,000 rows keeps every byte") {
  ProxyRunner proxy(make_config(shared_pg()));
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("pgmux-copy-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string in = (dir / "in.tsv").string();
  const std::string out = (dir / "out.tsv").string();
  {
    std::ofstream f(in);
    for (int i = 0; i < 100000; ++i) f << i << "\trow number " << i << " \\\\ tab\\there\n";
  }
  const std::string psql =
      std::string(kBin) + "psql -X -v ON_ERROR_STOP=1 -q '" + proxy.url() + "'";
  CommandResult r = run_command(
      psql + " -c 'drop table if exists copytest' -c 'create table copytest(id int, v text)'" +
      " -c \"\\copy copytest from '" + in +
      "'\" -c \"\\copy (select * from copytest order by id) to '" + out + "'\"");
  INFO(r.output);
  REQUIRE(r.status == 0);
  CommandResult a = run_command("md5sum < '" + in + "'");
  CommandResult b = run_command("md5sum < '" + out + "'");
  CHECK(a.output == b.output);
  Conn c(proxy.conninfo());
  REQUIRE(c.ok());
  CHECK(c.value("select count(*) from copytest") == "100000");
  std::filesystem::remove_all(dir);
}

TEST_CASE("a 100 MB value makes the round trip, and NOTICEs arrive") {
  ProxyRunner proxy(make_config(shared_pg()));
  Conn c(proxy.conninfo());
  REQUIRE(c.ok());
  std::string big(100 * 1024 * 1024, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 7919) >> 3);
  const char* values[] = {big.data()};
  const int lengths[] = {static_cast<int>(big.size())};
  const int formats[] = {1};
  PGresult* r = PQexecParams(c.raw, "select $1::bytea", 1, nullptr, values, lengths, formats, 1);
  REQUIRE_MESSAGE(PQresultStatus(r) == PGRES_TUPLES_OK, PQresultErrorMessage(r));
  REQUIRE(static_cast<size_t>(PQgetlength(r, 0, 0)) == big.size());
  CHECK(std::memcmp(PQgetvalue(r, 0, 0), big.data(), big.size()) == 0);
  PQclear(r);

  static std::vector<std::string> notices;
  notices.clear();
  PQsetNoticeProcessor(
      c.raw, [](void*, const char* message) { notices.emplace_back(message); }, nullptr);
  c.value("do $$ begin raise notice 'hello from the server'; end $$");
  REQUIRE(notices.size() == 1);
  CHECK(notices[0].find("hello from the server") != std::string::npos);
}

TEST_CASE("the cap holds: 300 clients never see more than 15 backends") {
  PgServer& pg = shared_pg();
  ProxyRunner proxy(make_config(pg));
  pgbench_init(proxy);
  std::atomic<bool> done{false};
  std::string output;
  std::thread bench([&] {
    CommandResult r =
        run_command(std::string(kBin) + "pgbench -n -S -c 300 -j 4 -T 5 '" + proxy.url() + "'");
    output = r.output;
    done = true;
  });
  int most = 0;
  int samples = 0;
  while (!done) {
    most = std::max(most, pgmux_backends(pg));
    ++samples;
  }
  bench.join();
  INFO(output);
  CHECK(output.find("number of failed transactions: 0 ") != std::string::npos);
  CHECK(samples > 10);
  CHECK(most >= 1);
  CHECK(most <= 15);
}

TEST_CASE("500 clients on an upstream with 17 usable connections: zero errors") {
  PgServer& pg = capped_pg();
  const std::string script = (std::filesystem::temp_directory_path() /
                              ("pgmux-short-" + std::to_string(getpid()) + ".sql"))
                                 .string();
  {
    std::ofstream f(script);
    f << "begin;\nselect 1;\nselect now();\ncommit;\n";
  }
  // Direct, a fraction of the load already hits the upstream's limit.
  const std::string direct = pg.url(kScramUser, kScramPassword);
  CommandResult d = run_command(std::string(kBin) + "pgbench -n -f '" + script +
                                "' -c 40 -j 2 -t 1 '" + direct + "'");
  INFO(d.output);
  CHECK(d.status != 0);
  CHECK(d.output.find("53300") == std::string::npos);  // pgbench prints the message only.
  CHECK(d.output.find("remaining connection slots are reserved") != std::string::npos);

  ProxyRunner proxy(make_config(pg));
  run_pgbench("-n -f '" + script + "' -c 500 -j 4 -T 20 '" + proxy.url() + "'");
  std::filesystem::remove(script);
}

TEST_CASE("queue deadline: a waiting client gets 53300 on time and can retry") {
  config::Config config = make_small_config(shared_pg(), 2);
  config.query_wait_timeout = std::chrono::seconds(2);
  ProxyRunner proxy(config);
  Conn holder1(proxy.conninfo());
  Conn holder2(proxy.conninfo());
  Conn waiter(proxy.conninfo());
  REQUIRE(holder1.ok());
  REQUIRE(holder2.ok());
  REQUIRE(waiter.ok());
  holder1.value("begin");
  holder1.value("select 1");
  holder2.value("begin");
  holder2.value("select 1");

  const auto start = Clock::now();
  PGresult* r = PQexec(waiter.raw, "select 42");
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  CHECK(PQresultStatus(r) == PGRES_FATAL_ERROR);
  const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  CHECK(std::string(code != nullptr ? code : "") == "53300");
  const std::string message = PQresultErrorMessage(r);
  CHECK(message.find("pgmux waited 2 s for one of 2 busy server connections") != std::string::npos);
  PQclear(r);
  CHECK(elapsed >= 1.8);
  CHECK(elapsed <= 2.2);

  // The holders were not disturbed, and the waiter can retry once one is free.
  CHECK(holder1.value("select 7") == "7");
  holder1.value("commit");
  CHECK(waiter.value("select 42") == "42");
  holder2.value("commit");
}

TEST_CASE("a client killed inside a transaction leaves nothing behind") {
  config::Config config = make_small_config(shared_pg(), 1);
  ProxyRunner proxy(config);
  {
    Conn setup(proxy.conninfo());
    REQUIRE(setup.ok());
    setup.value("drop table if exists killtest");
    setup.value("create table killtest(id int)");
  }
  Conn victim(proxy.conninfo());
  REQUIRE(victim.ok());
  victim.value("begin");
  victim.value("insert into killtest values (1)");
  // Kill the connection without a Terminate message.
  ::shutdown(PQsocket(victim.raw), SHUT_RDWR);

  Conn next(proxy.conninfo());
  REQUIRE(next.ok());
  CHECK(next.value("select count(*) from killtest") == "0");
  CHECK(next.value("select pg_current_xact_id_if_assigned() is null") == "t");
  // The closed server's backend rolls back and exits on its own schedule:
  // poll (bounded) until PostgreSQL has noticed.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  std::string open_transactions;
  do {
    open_transactions =
        next.value("select count(*) from pg_stat_activity where state like 'idle in transaction%'");
  } while (open_transactions != "0" && Clock::now() < deadline);
  CHECK(open_transactions == "0");
}

TEST_CASE("an upstream refusing with 53300 at first: waiting clients are served once it accepts") {
  PgServer& pg = capped_pg();
  // Take every non-superuser slot (20 - 3 reserved).
  std::vector<std::unique_ptr<Conn>> hogs;
  for (int i = 0; i < 17; ++i) {
    hogs.push_back(std::make_unique<Conn>(pg.url(kScramUser, kScramPassword)));
    REQUIRE(hogs.back()->ok());
  }
  Conn extra(pg.url(kScramUser, kScramPassword));
  REQUIRE_FALSE(extra.ok());  // The upstream is full: it says 53300.

  config::Config config = make_config(pg);
  config.min_server_connections = 0;
  ProxyRunner proxy(config);
  std::atomic<int> served{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 5; ++i) {
    clients.emplace_back([&] {
      Conn c(proxy.conninfo());
      if (!c.ok()) {
        ++failed;
        MESSAGE("client error: " << c.error());
        return;
      }
      try {
        if (c.value("select 1") == "1") ++served;
      } catch (const std::exception& e) {
        ++failed;
        MESSAGE(e.what());
      }
    });
  }
  // The refusal lasts a while: nobody can have been served yet.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  CHECK(served == 0);
  hogs.clear();
  for (auto& t : clients) t.join();
  CHECK(failed == 0);
  CHECK(served == 5);
}

TEST_CASE("cancel: pg_sleep(30) is cancelled within 1 s and the connection stays usable") {
  PgServer& pg = shared_pg();
  ProxyRunner proxy(make_config(pg));
  Conn c(proxy.conninfo());
  REQUIRE(c.ok());
  REQUIRE(PQsendQuery(c.raw, "select pg_sleep(30)") == 1);
  // Wait until the query really runs upstream.
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (pg.query_value("select count(*) from pg_stat_activity where query = 'select pg_sleep(30)' "
                        "and state = 'active'") != "1") {
    REQUIRE(Clock::now() < deadline);
  }
  const auto start = Clock::now();
  PGcancel* cancel = PQgetCancel(c.raw);
  char err[256];
  REQUIRE(PQcancel(cancel, err, sizeof err) == 1);
  PQfreeCancel(cancel);
  PGresult* r = PQgetResult(c.raw);
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  CHECK(std::string(code != nullptr ? code : "") == "57014");
  PQclear(r);
  while ((r = PQgetResult(c.raw)) != nullptr) PQclear(r);
  CHECK(elapsed < 1.0);
  CHECK(c.value("select 5") == "5");
}

TEST_CASE("server_lifetime: backends are replaced under load with no client error") {
  PgServer& pg = shared_pg();
  config::Config config = make_config(pg);
  config.server_lifetime = std::chrono::seconds(2);
  ProxyRunner proxy(config);
  pgbench_init(proxy);
  std::atomic<bool> done{false};
  std::string output;
  int status = -1;
  std::thread bench([&] {
    CommandResult r =
        run_command(std::string(kBin) + "pgbench -n -S -c 20 -j 2 -T 6 '" + proxy.url() + "'");
    output = r.output;
    status = r.status;
    done = true;
  });
  std::set<std::string> first_seen;
  std::set<std::string> all_seen;
  const std::string sql =
      std::string(
          "select coalesce(string_agg(pid::text || '@' || backend_start::text, ','), '') "
          "from pg_stat_activity where ") +
      kPgmuxBackendsWhere;
  while (!done) {
    std::string list = pg.query_value(sql);
    size_t pos = 0;
    while (pos < list.size()) {
      size_t comma = list.find(',', pos);
      if (comma == std::string::npos) comma = list.size();
      std::string item = list.substr(pos, comma - pos);
      if (first_seen.empty() || all_seen.empty()) first_seen.insert(item);
      all_seen.insert(item);
      pos = comma + 1;
    }
  }
  bench.join();
  INFO(output);
  CHECK(status == 0);
  CHECK(output.find("number of failed transactions: 0 ") != std::string::npos);
  CHECK(all_seen.size() > 15);  // More backends over time than the cap: they were replaced.
  // None of the first backends is still there at the end.
  std::string final_list = pg.query_value(sql);
  for (const std::string& item : first_seen) CHECK(final_list.find(item) == std::string::npos);
}

// ---- Raw wire tests ----------------------------------------------------------

int connect_raw(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  return fd;
}

// Sends `bytes`, reads until EOF, returns the SQLSTATE of the ErrorResponse.
std::string send_and_read_error(uint16_t port, const std::string& bytes, bool* closed) {
  int fd = connect_raw(port);
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(bytes.size()));
  std::string in;
  char chunk[4096];
  ssize_t n;
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) in.append(chunk, static_cast<size_t>(n));
  *closed = n == 0;
  ::close(fd);
  protocol::ByteView view(reinterpret_cast<const uint8_t*>(in.data()), in.size());
  protocol::Frame frame = protocol::frame_message(view, 1 << 20);
  if (!frame.whole_in(view) || frame.type != 'E') return "no ErrorResponse";
  auto fields = protocol::parse_error_response(view.first(frame.size));
  if (!fields) return "malformed ErrorResponse";
  CHECK(fields->severity == "FATAL");
  return std::string(fields->sqlstate);
}

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

TEST_CASE("malformed startup packets get FATAL and a closed connection; others carry on") {
  config::Config config = make_config(shared_pg());
  config.auth_type = config::AuthType::kTrust;  // The raw client below speaks no SCRAM.
  ProxyRunner proxy(config);
  Conn healthy(proxy.conninfo());
  REQUIRE(healthy.ok());
  CHECK(healthy.value("select 1") == "1");
  bool closed = false;

  SUBCASE("length below 8") {
    CHECK(send_and_read_error(proxy.port(), be32(4) + "abcd", &closed) == "08P01");
  }
  SUBCASE("length above the maximum") {
    CHECK(send_and_read_error(proxy.port(), be32(20000) + be32(196608), &closed) == "08P01");
  }
  SUBCASE("unknown protocol version") {
    std::string body = be32(0x00020000) + std::string("user\0app_scram\0\0", 16);
    CHECK(send_and_read_error(proxy.port(), be32(static_cast<uint32_t>(4 + body.size())) + body,
                              &closed) == "08P01");
  }
  SUBCASE("no user") {
    std::string body = be32(196608) + std::string("database\0app\0\0", 14);
    CHECK(send_and_read_error(proxy.port(), be32(static_cast<uint32_t>(4 + body.size())) + body,
                              &closed) == "28000");
  }
  SUBCASE("unknown database") {
    std::string body = be32(196608) + std::string("user\0app_scram\0database\0nope\0\0", 30);
    CHECK(send_and_read_error(proxy.port(), be32(static_cast<uint32_t>(4 + body.size())) + body,
                              &closed) == "3D000");
  }
  SUBCASE("garbage after login") {
    // A valid login, then a typed message whose length field is impossible.
    std::string body = be32(196608) + std::string("user\0app_scram\0database\0app\0\0", 29);
    std::string bytes = be32(static_cast<uint32_t>(4 + body.size())) + body;
    int fd = connect_raw(proxy.port());
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) > 0);
    std::string in;
    char chunk[4096];
    // Read up to ReadyForQuery.
    while (in.find(std::string("Z\0\0\0\5I", 6)) == std::string::npos) {
      ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      REQUIRE(n > 0);
      in.append(chunk, static_cast<size_t>(n));
    }
    std::string garbage = std::string("Q") + be32(2);
    REQUIRE(::send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL) > 0);
    std::string tail;
    ssize_t n;
    while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) tail.append(chunk, static_cast<size_t>(n));
    closed = n == 0;
    ::close(fd);
    CHECK(tail.find("08P01") != std::string::npos);
  }
  CHECK(closed);
  CHECK(healthy.value("select 2") == "2");
}

}  // namespace
}  // namespace pgmux::testing

namespace pgmux::testing {
namespace {

TEST_CASE("the pgmux binary serves DATABASE_URL and stops cleanly on SIGTERM and SIGINT") {
  PgServer& pg = shared_pg();
  for (int signal_number : {SIGTERM, SIGINT}) {
    const uint16_t port = free_port();
    const std::string log = (std::filesystem::temp_directory_path() /
                             ("pgmux-bin-" + std::to_string(getpid()) + ".log"))
                                .string();
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      setenv("DATABASE_URL", pg.url(kScramUser, kScramPassword).c_str(), 1);
      setenv("PGMUX_LISTEN", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
      setenv("PGMUX_MIN_SERVER_CONNECTIONS", "1", 1);
      std::FILE* out = std::freopen(log.c_str(), "w", stderr);
      (void)out;
      dup2(2, 1);
      execl(PGMUX_BINARY, PGMUX_BINARY, static_cast<char*>(nullptr));
      _exit(127);
    }
    const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port) +
                                 " user=" + kScramUser + " password=" + kScramPassword +
                                 " dbname=app sslmode=disable connect_timeout=2";
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (PQping(conninfo.c_str()) != PQPING_OK) REQUIRE(Clock::now() < deadline);
    {
      Conn c(conninfo);
      REQUIRE(c.ok());
      CHECK(c.value("select current_user") == kScramUser);
    }
    REQUIRE(kill(pid, signal_number) == 0);
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(text);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(text.find("pgmux stopped") != std::string::npos);
    CHECK(text.find(kScramPassword) == std::string::npos);
    std::filesystem::remove(log);
  }
}

}  // namespace
}  // namespace pgmux::testing

namespace pgmux::testing {
namespace {

TEST_CASE("session state pins a client: its temp table and search_path never reach another") {
  config::Config config = make_small_config(shared_pg(), 3);
  ProxyRunner proxy(config);
  Conn a(proxy.conninfo());
  REQUIRE(a.ok());
  a.value("create temp table pinned_temp(x int)");
  a.value("set search_path = pg_catalog, public");
  std::vector<std::unique_ptr<Conn>> others;
  for (int i = 0; i < 6; ++i) {
    others.push_back(std::make_unique<Conn>(proxy.conninfo()));
    REQUIRE(others.back()->ok());
    for (int round = 0; round < 5; ++round) {
      CHECK(others.back()->value("select coalesce(to_regclass('pg_temp.pinned_temp')::text, '')") ==
            "");
      CHECK(others.back()->value("show search_path") == "\"$user\", public");
    }
    // A's session survives across its own transactions.
    CHECK(a.value("select count(*) from pinned_temp") == "0");
    CHECK(a.value("show search_path") == "pg_catalog, public");
  }
  // DISCARD ALL ends the pin; the server is then shared again, and clean.
  a.value("discard all");
  CHECK(a.value("show search_path") == "\"$user\", public");
}

}  // namespace
}  // namespace pgmux::testing

namespace pgmux::testing {
namespace {

TEST_CASE(
    "drivers: postgres.js, psycopg and node-postgres with their default prepared statements") {
  // Each driver opens 8 to 10 connections; 3 servers make them share, so
  // every named statement is used on servers where another client's
  // connection prepared it, or none did.
  config::Config config = make_small_config(shared_pg(), 3);
  ProxyRunner proxy(config);
  CommandResult r = run_command(std::string("bash ") + PGMUX_SOURCE_DIR +
                                "/tests/drivers/run_drivers.sh '" + proxy.url() + "'");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("postgresjs: 8000 queries, 0 errors") != std::string::npos);
  CHECK(r.output.find("psycopg: 2400 queries, 0 errors") != std::string::npos);
  CHECK(r.output.find("node-postgres: 8000 queries, 0 errors") != std::string::npos);
}

}  // namespace
}  // namespace pgmux::testing
