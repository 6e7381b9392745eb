// Fault tests: clients that give up while queued, and an upstream that goes
// away and comes back. Each test has its own PostgreSQL, since they stop it
// or fill its pool.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <sys/socket.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

TEST_CASE("clients that give up while queued leave the queue, and no server is opened for them") {
  PgServer pg;
  config::Config config = make_small_config(pg, 2);
  config.query_wait_timeout = 60s;
  ProxyRunner proxy(config);
  Conn holder1(proxy.conninfo());
  Conn holder2(proxy.conninfo());
  REQUIRE(holder1.ok());
  REQUIRE(holder2.ok());
  holder1.value("begin");
  holder1.value("select 1");
  holder2.value("begin");
  holder2.value("select 1");

  std::vector<std::unique_ptr<Conn>> quitters;
  for (int i = 0; i < 5; ++i) {
    quitters.push_back(std::make_unique<Conn>(proxy.conninfo()));
    REQUIRE(quitters.back()->ok());
    REQUIRE(PQsendQuery(quitters.back()->raw, "select 1") == 1);
  }
  auto counts = wait_for_counts(proxy, [](const auto& c) { return c.waiting == 5; });
  REQUIRE(counts.waiting == 5);
  CHECK(counts.active == 2);

  for (auto& quitter : quitters) quitter->drop();
  counts = wait_for_counts(
      proxy, [](const auto& c) { return c.waiting == 0; }, 5s);
  CHECK(counts.waiting == 0);
  CHECK(counts.opening == 0);
  CHECK(pgmux_backends(pg) <= 2);

  // A server going away must not be replaced for the clients that left: the
  // close and any reopening happen in one turn of pgmux's loop, so the first
  // counts without holder1's server show it.
  holder1.drop();
  counts = wait_for_counts(proxy, [](const auto& c) { return c.active == 1; });
  CHECK(counts.active == 1);
  CHECK(counts.opening == 0);
  CHECK(counts.idle == 0);
  CHECK(counts.waiting == 0);
  CHECK(pgmux_backends(pg) <= 2);

  holder2.value("commit");
  Conn next(proxy.conninfo());
  REQUIRE(next.ok());
  CHECK(next.value("select 5") == "5");
  counts = proxy.pool_counts();
  CHECK(counts.waiting == 0);
  CHECK(counts.opening == 0);
  CHECK(counts.idle + counts.active == 1);
}

TEST_CASE("clients that say goodbye (Terminate) while queued leave the queue at once") {
  // libpq's PQfinish sends Terminate and closes: more bytes after the
  // queued request, then EOF. pgmux must see the EOF while the client
  // waits, not run its request when a server frees up.
  PgServer pg;
  config::Config config = make_small_config(pg, 1);
  config.query_wait_timeout = 60s;
  ProxyRunner proxy(config);
  Conn holder(proxy.conninfo());
  REQUIRE(holder.ok());
  holder.value("begin");
  holder.value("select 1");
  std::vector<std::unique_ptr<Conn>> quitters;
  for (int i = 0; i < 5; ++i) {
    quitters.push_back(std::make_unique<Conn>(proxy.conninfo()));
    REQUIRE(quitters.back()->ok());
    REQUIRE(PQsendQuery(quitters.back()->raw,
                        "insert into quitters_ran select from pg_class limit 0") == 1);
  }
  auto counts = wait_for_counts(proxy, [](const auto& c) { return c.waiting == 5; });
  REQUIRE(counts.waiting == 5);
  quitters.clear();  // PQfinish: Terminate, then close.
  counts = wait_for_counts(
      proxy, [](const auto& c) { return c.waiting == 0; }, 5s);
  CHECK(counts.waiting == 0);
  holder.value("commit");
  CHECK(holder.value("select 6") == "6");
}

TEST_CASE("after an outage a waiting client is served within 1 s of the upstream accepting") {
  PgServer pg;
  config::Config config = make_config(pg);
  config.max_server_connections = 4;
  config.min_server_connections = 2;
  config.query_wait_timeout = 60s;  // Longer than the outage: nobody gets 53300.
  // A backoff that reaches its max (2 s, more than the 1 s promised) within
  // the 4 s outage.
  config.server_retry_initial = 250ms;
  config.server_retry_max = 2s;
  ProxyRunner proxy(config);
  Conn idle(proxy.conninfo());
  Conn waiter(proxy.conninfo());
  REQUIRE(idle.ok());
  REQUIRE(waiter.ok());
  CHECK(idle.value("select 1") == "1");
  CHECK(waiter.value("select 1") == "1");
  auto counts = wait_for_counts(proxy, [](const auto& c) { return c.idle == 2; });
  REQUIRE(counts.idle == 2);

  pg.stop("fast");
  Clock::time_point served_at{};
  std::string answer;
  std::string error;
  std::thread waiting([&] {
    PGresult* r = PQexec(waiter.raw, "select 42");
    served_at = Clock::now();
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      answer = PQgetvalue(r, 0, 0);
    } else {
      error = PQresultErrorMessage(r);
    }
    PQclear(r);
  });
  counts = wait_for_counts(proxy, [](const auto& c) { return c.waiting == 1; });
  CHECK(counts.waiting == 1);

  // The outage lasts 4 s, long enough for the backoff to reach its max.
  const auto down_since = Clock::now();
  while (Clock::now() < down_since + 4s) {
    counts = proxy.pool_counts();
    CHECK(counts.waiting == 1);
    CHECK(counts.idle + counts.active == 0);
    // Past the first failures, at most one login is in flight.
    if (Clock::now() > down_since + 1s) CHECK(counts.opening <= 1);
    std::this_thread::sleep_for(200ms);  // Paces the checks; nothing waits on it.
  }

  pg.start();  // Returns once PostgreSQL accepts connections.
  const auto accepting = Clock::now();
  waiting.join();
  const double recovery = std::chrono::duration<double>(served_at - accepting).count();
  MESSAGE("first query served " << recovery << " s after the upstream accepted again");
  CHECK(error.empty());
  CHECK(answer == "42");
  CHECK(recovery < 1.0);

  // The client that was idle through the outage never sent a query to a
  // server that died: it is served, with no error.
  CHECK(idle.value("select 7") == "7");
  CHECK(waiter.value("select 8") == "8");
  counts = wait_for_counts(proxy, [](const auto& c) { return c.idle == 2; });
  CHECK(counts.waiting == 0);
  CHECK(counts.idle == 2);
}

}  // namespace
}  // namespace pgmux::testing
