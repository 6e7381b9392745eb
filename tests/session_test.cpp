// Transaction mode as a drop-in: named prepared statements shared across
// server connections, session parameters tracked per client, and the
// session-state guard (pinning, its cap, the refuse policy). Real clients
// (libpq, pgbench) through pgmux to a real PostgreSQL 15.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "protocol/extended.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "tests/pg_fixture.h"
#include "tests/pgbench.h"
#include "tests/proxy_fixture.h"
#include "tests/raw_client.h"

namespace pgmux::testing {
namespace {

constexpr const char* kBin = "/usr/lib/postgresql/15/bin/";

PgServer& session_pg() {
  static PgServer pg;
  return pg;
}

struct Result {
  ExecStatusType status = PGRES_FATAL_ERROR;
  std::string value;  // First column of the first row.
  std::string sqlstate;
  std::string error;
};

class Client {
 public:
  explicit Client(const std::string& conninfo) : raw_(PQconnectdb(conninfo.c_str())) {}
  ~Client() { PQfinish(raw_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  bool ok() const { return PQstatus(raw_) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(raw_); }
  PGconn* raw() { return raw_; }

  static Result take(PGresult* r) {
    Result out;
    out.status = PQresultStatus(r);
    if (out.status == PGRES_TUPLES_OK && PQntuples(r) > 0) out.value = PQgetvalue(r, 0, 0);
    if (const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE)) out.sqlstate = code;
    out.error = PQresultErrorMessage(r);
    PQclear(r);
    return out;
  }
  Result exec(const std::string& sql) { return take(PQexec(raw_, sql.c_str())); }
  // The first value of a query that must succeed.
  std::string value(const std::string& sql) {
    Result r = exec(sql);
    INFO(sql << ": " << r.error);
    REQUIRE((r.status == PGRES_TUPLES_OK || r.status == PGRES_COMMAND_OK));
    return r.value;
  }
  Result prepare(const std::string& name, const std::string& sql) {
    return take(PQprepare(raw_, name.c_str(), sql.c_str(), 0, nullptr));
  }
  Result run(const std::string& name, const std::vector<std::string>& params = {}) {
    std::vector<const char*> values;
    for (const std::string& p : params) values.push_back(p.c_str());
    return take(PQexecPrepared(raw_, name.c_str(), static_cast<int>(values.size()), values.data(),
                               nullptr, nullptr, 0));
  }

 private:
  PGconn* raw_;
};

config::Config small_pool(uint32_t servers) { return make_small_config(session_pg(), servers); }

TEST_CASE("pgbench -M prepared: 100 clients on 15 servers, select-only and TPC-B") {
  ProxyRunner proxy(make_config(session_pg()));
  CommandResult init = run_command(std::string(kBin) + "pgbench -i -s 2 -q '" + proxy.url() + "'");
  INFO(init.output);
  REQUIRE(init.status == 0);
  run_pgbench("-n -S -M prepared -c 100 -j 4 -T 4 '" + proxy.url() + "'");
  run_pgbench("-n -M prepared -c 100 -j 4 -T 4 '" + proxy.url() + "'");
  CHECK(pgmux_backends(session_pg()) <= 15);
}

TEST_CASE("a statement prepared once runs in 1,000 transactions on many servers") {
  ProxyRunner proxy(small_pool(3));
  constexpr int kClients = 6;
  std::vector<std::set<std::string>> pids(kClients);
  std::vector<int> wrong(kClients, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Client client(proxy.conninfo());
      if (!client.ok()) {
        wrong[c] = -1;
        return;
      }
      if (client
              .prepare("add", "select ($1::int + " + std::to_string(c) +
                                  ")::text || ' ' || pg_backend_pid()")
              .status != PGRES_COMMAND_OK) {
        wrong[c] = -2;
        return;
      }
      for (int i = 0; i < 1000; ++i) {
        // Every tenth transaction is explicit; the rest autocommit.
        const bool block = i % 10 == 0;
        if (block && client.exec("begin").status != PGRES_COMMAND_OK) ++wrong[c];
        Result r = client.run("add", {std::to_string(i)});
        if (block && client.exec("commit").status != PGRES_COMMAND_OK) ++wrong[c];
        const std::string expect = std::to_string(i + c) + " ";
        if (r.status != PGRES_TUPLES_OK || r.value.rfind(expect, 0) != 0) {
          ++wrong[c];
          continue;
        }
        pids[c].insert(r.value.substr(expect.size()));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    CHECK(wrong[c] == 0);
    CHECK(pids[c].size() >= 2);  // It landed on more than one server.
  }
}

TEST_CASE(
    "two clients, one name, different SQL: each gets its own; a close affects its owner only") {
  // One server: both clients' statements live on the same connection.
  ProxyRunner proxy(small_pool(1));
  Client a(proxy.conninfo());
  Client b(proxy.conninfo());
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  REQUIRE(a.prepare("q", "select 'from a'").status == PGRES_COMMAND_OK);
  REQUIRE(b.prepare("q", "select 'from b'").status == PGRES_COMMAND_OK);
  for (int i = 0; i < 5; ++i) {
    CHECK(a.run("q").value == "from a");
    CHECK(b.run("q").value == "from b");
  }
  // The same name twice in one session is refused, as PostgreSQL does.
  CHECK(a.prepare("q", "select 1").sqlstate == "42P05");
  CHECK(a.run("q").value == "from a");

  // Two names for one text share a server statement; closing one client's
  // name leaves the other client's working.
  REQUIRE(a.prepare("shared", "select 'shared ' || $1::text").status == PGRES_COMMAND_OK);
  REQUIRE(b.prepare("mine", "select 'shared ' || $1::text").status == PGRES_COMMAND_OK);
  CHECK(a.value("deallocate shared") == "");
  Result gone = a.run("shared", {"x"});
  CHECK(gone.sqlstate == "26000");
  CHECK(b.run("mine", {"y"}).value == "shared y");
  // And the name can be prepared again, with other SQL.
  REQUIRE(a.prepare("shared", "select 'again'").status == PGRES_COMMAND_OK);
  CHECK(a.run("shared").value == "again");
  // DEALLOCATE ALL clears only that client's names.
  CHECK(a.value("deallocate all") == "");
  CHECK(a.run("q").sqlstate == "26000");
  CHECK(b.run("q").value == "from b");
}

// Statuses of results in order, up to and including `syncs` pipeline syncs.
std::vector<ExecStatusType> pipeline_results(PGconn* conn, int syncs,
                                             std::vector<std::string>* sqlstates) {
  std::vector<ExecStatusType> out;
  int seen = 0;
  for (int guard = 0; seen < syncs && guard < 100; ++guard) {
    PGresult* r = PQgetResult(conn);
    if (r == nullptr) continue;
    const ExecStatusType status = PQresultStatus(r);
    const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    sqlstates->push_back(code != nullptr ? code : "");
    out.push_back(status);
    if (status == PGRES_PIPELINE_SYNC) ++seen;
    PQclear(r);
  }
  return out;
}

TEST_CASE("a Parse error arrives in its place in a libpq pipeline") {
  ProxyRunner proxy(small_pool(1));
  // Another client prepares the same text first, so pgmux answers the
  // pipelined Parse itself (the server has it) in the right place.
  Client other(proxy.conninfo());
  REQUIRE(other.ok());
  REQUIRE(other.prepare("x", "select $1::int * 2").status == PGRES_COMMAND_OK);

  Client c(proxy.conninfo());
  REQUIRE(c.ok());
  PGconn* conn = c.raw();
  REQUIRE(PQenterPipelineMode(conn) == 1);
  const char* five[] = {"5"};
  REQUIRE(PQsendPrepare(conn, "good", "select $1::int * 2", 0, nullptr) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "good", 1, five, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendPrepare(conn, "bad", "selec oops", 0, nullptr) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "bad", 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "good", 1, five, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn) == 1);
  // After the sync: the failed name does not exist, so it can be prepared.
  REQUIRE(PQsendPrepare(conn, "bad", "select 'fixed'", 0, nullptr) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "bad", 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "good", 1, five, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn) == 1);

  std::vector<std::string> codes;
  const std::vector<ExecStatusType> got = pipeline_results(conn, 2, &codes);
  const std::vector<ExecStatusType> want = {
      PGRES_COMMAND_OK,       PGRES_TUPLES_OK,     PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED,
      PGRES_PIPELINE_ABORTED, PGRES_PIPELINE_SYNC, PGRES_COMMAND_OK,  PGRES_TUPLES_OK,
      PGRES_TUPLES_OK,        PGRES_PIPELINE_SYNC};
  std::string got_text;
  for (ExecStatusType s : got) got_text += std::string(PQresStatus(s)) + " ";
  INFO("results: " << got_text);
  CHECK(got == want);
  REQUIRE(codes.size() >= 3);
  CHECK(codes[2] == "42601");  // The syntax error, third in line.
  REQUIRE(PQexitPipelineMode(conn) == 1);
  CHECK(c.run("good", {"21"}).value == "42");
}

TEST_CASE("more statements than max_prepared_statements rotate through each server's LRU") {
  config::Config config = small_pool(2);
  config.max_prepared_statements = 5;
  ProxyRunner proxy(config);
  constexpr int kClients = 3;
  constexpr int kStatements = 20;
  std::vector<int> wrong(kClients, 0);
  std::vector<int> most_on_server(kClients, 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      Client client(proxy.conninfo());
      if (!client.ok()) {
        wrong[c] = -1;
        return;
      }
      for (int s = 0; s < kStatements; ++s) {
        if (client.prepare("s" + std::to_string(s), "select " + std::to_string(s) + " + $1::int")
                .status != PGRES_COMMAND_OK) {
          ++wrong[c];
        }
      }
      std::mt19937 rng(static_cast<unsigned>(c));
      for (int round = 0; round < 200; ++round) {
        const int s = static_cast<int>(rng() % kStatements);
        Result r = client.run("s" + std::to_string(s), {std::to_string(c * 100)});
        if (r.status != PGRES_TUPLES_OK || r.value != std::to_string(s + c * 100)) ++wrong[c];
        if (round % 20 == 0) {
          const std::string n = client.value("select count(*) from pg_prepared_statements");
          most_on_server[c] = std::max(most_on_server[c], std::stoi(n));
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int c = 0; c < kClients; ++c) {
    CHECK(wrong[c] == 0);
    CHECK(most_on_server[c] <= 5);
    CHECK(most_on_server[c] >= 1);
  }
}

TEST_CASE("a Close made to make room and skipped after an error leaves the statement recorded") {
  config::Config config = small_pool(1);
  config.max_prepared_statements = 1;
  ProxyRunner proxy(config);
  Client c(proxy.conninfo());
  REQUIRE(c.ok());
  REQUIRE(c.prepare("a", "select 'a'").status == PGRES_COMMAND_OK);
  REQUIRE(c.prepare("b", "select 'b'").status == PGRES_COMMAND_OK);  // Evicts a.
  PGconn* conn = c.raw();
  REQUIRE(PQenterPipelineMode(conn) == 1);
  // The first Bind fails, so the server skips the Close of b and the Parse
  // of a that pgmux puts before the second.
  REQUIRE(PQsendQueryPrepared(conn, "missing", 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQsendQueryPrepared(conn, "a", 0, nullptr, nullptr, nullptr, 0) == 1);
  REQUIRE(PQpipelineSync(conn) == 1);
  std::vector<std::string> codes;
  const std::vector<ExecStatusType> got = pipeline_results(conn, 1, &codes);
  CHECK(got == std::vector<ExecStatusType>{PGRES_FATAL_ERROR, PGRES_PIPELINE_ABORTED,
                                           PGRES_PIPELINE_SYNC});
  REQUIRE(PQexitPipelineMode(conn) == 1);
  // b is still prepared on the server and a is not: both work.
  for (int i = 0; i < 3; ++i) {
    CHECK(c.run("b").value == "b");
    CHECK(c.run("a").value == "a");
  }
  // The statements' references stayed right: dropping the names and using
  // others leaves nothing dangling (the sanitizer build would say).
  c.value("deallocate b");
  c.value("deallocate a");
  REQUIRE(c.prepare("z", "select 'z'").status == PGRES_COMMAND_OK);
  CHECK(c.run("z").value == "z");
}

TEST_CASE("session parameters follow their client across 50 interleaved clients") {
  session_pg().exec("create schema if not exists setter_schema authorization app_scram", "app");
  ProxyRunner proxy(small_pool(3));
  constexpr int kClients = 50;
  constexpr int kSetters = 10;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<Client>(proxy.conninfo()));
    REQUIRE(clients.back()->ok());
  }
  const std::string show =
      "select current_setting('TimeZone') || '|' || current_setting('application_name') || '|' "
      "|| current_setting('search_path') || '|' || current_setting('DateStyle')";
  // What a client that never set anything sees.
  const std::string plain = clients[kSetters]->value(show);
  auto expected = [&](int i) {
    if (i >= kSetters) return plain;
    return "Etc/GMT+" + std::to_string(i + 1) + "|setter " + std::to_string(i) +
           "|setter_schema, public|SQL, DMY";
  };
  for (int i = 0; i < kSetters; ++i) {
    Client& c = *clients[i];
    c.value("set timezone = 'Etc/GMT+" + std::to_string(i + 1) + "'");
    c.value("set application_name to 'setter " + std::to_string(i) + "'");
    c.value("set search_path = setter_schema, public");
    c.value("set datestyle = 'SQL, DMY'");
  }
  std::mt19937 rng(42);
  std::vector<int> order(kClients);
  for (int i = 0; i < kClients; ++i) order[i] = i;
  int checked = 0;
  for (int round = 0; round < 6; ++round) {
    std::shuffle(order.begin(), order.end(), rng);
    for (int i : order) {
      Client& c = *clients[i];
      INFO("client " << i << " round " << round);
      if (round % 2 == 1) {
        // Inside an explicit transaction too.
        c.value("begin");
        CHECK(c.value(show) == expected(i));
        c.value("commit");
      } else {
        CHECK(c.value(show) == expected(i));
      }
      ++checked;
    }
  }
  CHECK(checked == kClients * 6);
  // RESET puts a setter back to what a fresh session has.
  clients[0]->value("reset search_path");
  clients[0]->value("reset timezone");
  CHECK(clients[0]->value("show search_path") == "\"$user\", public");
  CHECK(clients[0]->value("show timezone") == plain.substr(0, plain.find('|')));
  for (int i = kSetters; i < kClients; ++i) CHECK(clients[i]->value(show) == plain);
}

TEST_CASE("startup parameters are honoured: options -c, extra_float_digits, application_name") {
  ProxyRunner proxy(small_pool(2));
  Client a(proxy.conninfo() +
           " application_name=startup_app options='-c search_path=pg_catalog -c "
           "statement_timeout=4321' ");
  REQUIRE(a.ok());
  Client b(proxy.conninfo());
  REQUIRE(b.ok());
  CHECK(std::string(PQparameterStatus(a.raw(), "application_name")) == "startup_app");
  for (int i = 0; i < 5; ++i) {
    CHECK(a.value("show application_name") == "startup_app");
    CHECK(a.value("show search_path") == "pg_catalog");
    CHECK(a.value("show statement_timeout") == "4321ms");
    CHECK(b.value("show statement_timeout") == "0");
    CHECK(b.value("show search_path") == "\"$user\", public");
  }
}

TEST_CASE("pinning has a cap, and session_pinning = refuse refuses with 0A000") {
  SUBCASE("the cap") {
    config::Config config = small_pool(4);
    config.max_pinned_server_connections = 2;
    ProxyRunner proxy(config);
    Client a(proxy.conninfo());
    Client b(proxy.conninfo());
    Client c(proxy.conninfo());
    REQUIRE((a.ok() && b.ok() && c.ok()));
    a.value("create temp table t_a(x int)");
    b.value("create temp table t_b(x int)");
    Result refused = c.exec("create temp table t_c(x int)");
    CHECK(refused.sqlstate == "0A000");
    CHECK(refused.error.find("max_pinned_server_connections") != std::string::npos);
    // Everyone carries on; the pinned keep their sessions.
    CHECK(c.value("select 1") == "1");
    CHECK(a.value("select count(*) from t_a") == "0");
    CHECK(b.value("select count(*) from t_b") == "0");
    // DISCARD ALL releases a pin, and then c may pin.
    a.value("discard all");
    c.value("create temp table t_c(x int)");
    CHECK(c.value("select count(*) from t_c") == "0");
  }
  SUBCASE("refuse") {
    config::Config config = small_pool(2);
    config.session_pinning = config::SessionPinning::kRefuse;
    ProxyRunner proxy(config);
    Client a(proxy.conninfo());
    REQUIRE(a.ok());
    Result listen = a.exec("listen some_channel");
    CHECK(listen.sqlstate == "0A000");
    CHECK(listen.error.find("session_pinning") != std::string::npos);
    Result lock = a.exec("select pg_advisory_lock(1)");
    CHECK(lock.sqlstate == "0A000");
    // Transaction-scoped forms and tracked SETs are fine.
    CHECK(a.value("select pg_advisory_xact_lock(1)::text") == "");
    a.value("set search_path = pg_catalog");
    CHECK(a.value("show search_path") == "pg_catalog");
  }
}

TEST_CASE(
    "malformed Query, Bind, Describe or Close: FATAL 08P01 for that client, the others go on") {
  config::Config config = small_pool(1);
  config.auth_type = config::AuthType::kTrust;
  ProxyRunner proxy(config);
  Client other(proxy.conninfo());
  REQUIRE(other.ok());
  REQUIRE(other.prepare("q", "select 'still here'").status == PGRES_COMMAND_OK);
  // pgmux refuses the message itself: it never reaches the one server, whose
  // backend stays the same.
  const std::string backend = other.value("select pg_backend_pid()::text");
  const std::vector<std::string> bad = {
      std::string("B\0\0\0\x06"
                  "ab",
                  7),  // Bind whose names never end.
      std::string("D\0\0\0\x06"
                  "Xa",
                  7),                  // Describe of neither 'S' nor 'P'.
      std::string("C\0\0\0\x05S", 6),  // Close with no name at all.
      std::string("Q\0\0\0\x04", 5),   // Query with an empty body.
      std::string("Q\0\0\0\x07"
                  "abc",
                  8),  // Query whose text never ends.
  };
  for (const std::string& message : bad) {
    INFO("message type " << message[0]);
    RawClient raw(proxy.port());
    protocol::Bytes out = message;
    protocol::append_sync(out);
    std::string code;
    CHECK(raw.until_closed(out, &code) == "E");
    CHECK(code == "08P01");
    CHECK(other.run("q").value == "still here");
    CHECK(other.value("select pg_backend_pid()::text") == backend);
  }
}

TEST_CASE("Close of a statement: CloseComplete in its place; only the closer's name goes") {
  config::Config config = small_pool(1);
  config.auth_type = config::AuthType::kTrust;
  ProxyRunner proxy(config);
  RawClient a(proxy.port());
  Client b(proxy.conninfo());
  REQUIRE(b.ok());
  REQUIRE(b.prepare("b_name", "select 'shared text'").status == PGRES_COMMAND_OK);

  protocol::Bytes out;
  protocol::append_parse(out, "a_name", "select 'shared text'", 0, {});
  protocol::append_sync(out);
  CHECK(a.round_trip(out) == "1Z");

  // Bind, Execute, then Close in one pipeline: the CloseComplete pgmux
  // answers comes after the rows and the CommandComplete.
  out.clear();
  protocol::append_bind_header(out, "", "a_name", 6);
  out.append(std::string("\0\0\0\0\0\0", 6));  // No formats, parameters or result formats.
  out += 'E';
  out.append(std::string("\0\0\0\x09\0\0\0\0\0", 9));  // Unnamed portal, no row limit.
  protocol::append_close(out, 'S', "a_name");
  protocol::append_sync(out);
  CHECK(a.round_trip(out) == "2DC3Z");

  // The other client's statement still works on the same server.
  CHECK(b.run("b_name").value == "shared text");
  // And the closer's name is gone.
  out.clear();
  protocol::append_bind_header(out, "", "a_name", 6);
  out.append(std::string("\0\0\0\0\0\0", 6));
  protocol::append_sync(out);
  std::string code;
  CHECK(a.round_trip(out, &code) == "EZ");
  CHECK(code == "26000");
}

}  // namespace
}  // namespace pgmux::testing
