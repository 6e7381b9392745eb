// Pool tests of the wait queue, login failures, backoff and probes.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "protocol/sqlstate.h"
#include "proxy/pool.h"
#include "proxy/pool_test_fakes.h"

namespace pgmux::proxy {
namespace {

using namespace std::chrono_literals;
using namespace pool_fakes;
namespace sqlstate = protocol::sqlstate;

TEST_CASE(
    "a client that disconnects while queued or while waiting for the welcome counts back to "
    "zero") {
  FakeHost host;
  host.config_.max_server_connections = 1;
  Pool& pool = host.pool();

  // Waiting for the welcome: the first server is still logging in.
  FakeClient early;
  pool.request_welcome(&early);
  CHECK(pool.welcome_count() == 1);
  CHECK(early.pool_list == PoolList::kWelcome);
  pool.forget(&early);
  CHECK(pool.welcome_count() == 0);
  CHECK(early.pool_list == PoolList::kNone);
  host.servers.back()->log_in(host.now_);
  CHECK_FALSE(early.welcomed);

  // The only server is busy: five clients queue, then leave.
  FakeClient holder;
  pool.acquire(&holder);
  REQUIRE(holder.server != nullptr);
  std::vector<FakeClient> queued(5);
  for (FakeClient& c : queued) pool.acquire(&c);
  CHECK(pool.waiting_count() == 5);
  CHECK(pool.opening_count() == 0);  // The cap is reached.
  for (FakeClient& c : queued) {
    CHECK(c.pool_list == PoolList::kWaiting);
    pool.forget(&c);
  }
  CHECK(pool.waiting_count() == 0);
  CHECK(pool.welcome_count() == 0);

  // The released server goes idle: nobody is waiting for it.
  pool.release(holder.server);
  CHECK(pool.idle_count() == 1);
  CHECK(pool.active_count() == 0);
  for (const FakeClient& c : queued) CHECK(c.server == nullptr);

  // With the server gone, nothing is opened for the clients that left.
  host.live().front()->close("test");
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);
  CHECK(host.upstream().open() == 0);
}

TEST_CASE("queue deadline: only the FIFO head can be late; 53300 with the documented text") {
  FakeHost host;
  host.config_.max_server_connections = 2;
  warm_up(host);
  Pool& pool = host.pool();
  FakeClient h1, h2;
  pool.acquire(&h1);
  host.open_server(pool);  // A second server, logged in and taken by h2.
  host.servers.back()->log_in(host.now_);
  pool.acquire(&h2);
  REQUIRE(h1.server != nullptr);
  REQUIRE(h2.server != nullptr);

  FakeClient a, b;
  const TimeMs t0 = host.now_;
  pool.acquire(&a);
  host.now_ = t0 + 50;
  pool.acquire(&b);
  CHECK(pool.waiting_count() == 2);

  host.now_ = t0 + 1999;
  pool.tick(host.now_);
  CHECK(a.error_code.empty());
  host.now_ = t0 + 2000;
  pool.tick(host.now_);
  CHECK(a.error_code == "53300");
  CHECK(a.error_message ==
        "pgmux waited 2 s for one of 2 busy server connections; the query was not run");
  CHECK(a.error_hint.find("query_wait_timeout") != std::string::npos);
  CHECK(b.error_code.empty());  // Queued 50 ms later: not late yet.
  CHECK(pool.waiting_count() == 1);
  host.now_ = t0 + 2050;
  pool.tick(host.now_);
  CHECK(b.error_code == "53300");
  CHECK(pool.waiting_count() == 0);
}

TEST_CASE("backoff: initial doubling to max with +-25 % jitter") {
  config::Config config;
  config.server_retry_initial = 500ms;
  config.server_retry_max = 8s;
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; ++round) {
    Upstream upstream("h:1", 3, config);
    uint64_t nominal = 500;
    for (int failure = 1; failure <= 10; ++failure) {
      const TimeMs now = 10000;
      const uint64_t delay = upstream.on_failure(now, rng, Upstream::Outage::kFull);
      CHECK(delay >= nominal * 3 / 4);
      CHECK(delay <= nominal * 5 / 4);
      CHECK(upstream.retry_at() == now + delay);
      CHECK_FALSE(upstream.may_open(now + delay - 1));
      CHECK(upstream.may_open(now + delay));
      nominal = std::min<uint64_t>(nominal * 2, 8000);
    }
    upstream.on_success();
    CHECK(upstream.failures() == 0);
    const uint64_t again = upstream.on_failure(0, rng, Upstream::Outage::kFull);
    CHECK(again >= 375);
    CHECK(again <= 625);
  }
}

TEST_CASE("budget_sharing off: after a failure one login at a time, then the rest at once") {
  FakeHost host;
  host.config_.budget_sharing = config::BudgetSharing::kOff;
  host.config_.max_server_connections = 5;
  host.config_.query_wait_timeout = 1h;
  warm_up(host);
  Pool& pool = host.pool();
  host.live().front()->close("test");  // No server left.

  std::vector<FakeClient> clients(4);
  for (FakeClient& c : clients) pool.acquire(&c);
  CHECK(pool.opening_count() == 4);  // No failure yet: all at once.
  for (FakeServer* s : host.live()) s->fail_login(LoginFailure::kNoCapacity, "53300", "full");
  CHECK(pool.opening_count() == 0);
  CHECK(host.upstream().failures() == 4);
  for (const FakeClient& c : clients) CHECK(c.error_code.empty());  // They keep waiting.

  const TimeMs retry = host.upstream().retry_at();
  host.now_ = retry - 1;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);
  CHECK(host.probes == 0);  // Full, not down: no probe.
  host.now_ = retry;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 1);  // One probe connection.
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 1);

  host.live().back()->log_in(host.now_);
  CHECK(host.upstream().failures() == 0);
  CHECK(clients[0].server != nullptr);
  CHECK(pool.opening_count() == 3);  // The other three waiters, at once.
}

TEST_CASE("the cap holds under failures") {
  FakeHost host;
  host.config_.max_server_connections = 3;
  host.config_.query_wait_timeout = 1h;  // Longer than every backoff below.
  Pool& pool = host.pool();
  std::vector<FakeClient> clients(10);
  for (FakeClient& c : clients) pool.request_welcome(&c);
  CHECK(pool.opening_count() == 1);  // One login for the welcome.
  for (int round = 0; round < 20; ++round) {
    CHECK(host.upstream().open() <= 3);
    CHECK(pool.opening_count() <= 1);
    for (FakeServer* s : host.live()) {
      if (s->pool_list == PoolList::kOpening) {
        s->fail_login(LoginFailure::kUnreachable, "08001", "connection refused");
      }
    }
    host.now_ = host.upstream().retry_at();
    pool.tick(host.now_);
  }
  CHECK(pool.welcome_count() == 10);
  host.live().back()->log_in(host.now_);
  for (const FakeClient& c : clients) CHECK(c.welcomed);

  // Ten clients queue behind the one server: the pool opens up to the cap.
  for (FakeClient& c : clients) pool.acquire(&c);
  CHECK(host.upstream().open() == 3);
  CHECK(pool.opening_count() == 2);
  for (FakeServer* s : host.live()) {
    if (s->pool_list == PoolList::kOpening) s->fail_login(LoginFailure::kNoCapacity, "53300", "x");
  }
  for (int round = 0; round < 10; ++round) {
    host.now_ = host.upstream().retry_at();
    pool.tick(host.now_);
    CHECK(host.upstream().open() <= 3);
    CHECK(pool.opening_count() <= 1);
    for (FakeServer* s : host.live()) {
      if (s->pool_list == PoolList::kOpening)
        s->fail_login(LoginFailure::kNoCapacity, "53300", "x");
    }
  }
}

TEST_CASE("a rejected login fails the waiting clients at once") {
  FakeHost host;
  Pool& pool = host.pool();
  FakeClient a;
  pool.request_welcome(&a);
  host.servers.back()->fail_login(LoginFailure::kRejected, "28P01",
                                  "password authentication failed");
  CHECK(a.fatal);
  CHECK(a.error_code == "28P01");
  CHECK(a.error_message.find("password authentication failed") != std::string::npos);
  CHECK(pool.welcome_count() == 0);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(host.probes == 0);
}

TEST_CASE("probes: while down, one at a time every interval; a connect ends the backoff") {
  FakeHost host;
  host.config_.max_server_connections = 4;
  warm_up(host);
  Pool& pool = host.pool();
  host.live().front()->close("the upstream closed the connection");
  std::vector<FakeClient> clients(3);
  for (FakeClient& c : clients) pool.acquire(&c);
  for (FakeServer* s : host.live()) {
    s->fail_login(LoginFailure::kUnreachable, "08001", "connection refused");
  }
  CHECK(pool.opening_count() == 0);
  const TimeMs retry = host.upstream().retry_at();
  REQUIRE(retry > host.now_ + 1000);  // Three failures: about 2 s.

  pool.tick(host.now_);
  CHECK(host.probes == 1);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(host.probes == 1);  // One in flight.
  pool.on_probe_done(false);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(host.probes == 1);  // Not before the interval.
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(host.probes == 2);
  CHECK(pool.opening_count() == 0);

  // The upstream is back: one login at once, the rest after it succeeds.
  pool.on_probe_done(true);
  CHECK(host.now_ < retry);
  CHECK(pool.opening_count() == 1);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(host.probes == 2);  // No probe while a login is in flight.
  CHECK(pool.opening_count() == 1);
  host.live().back()->log_in(host.now_);
  CHECK(clients[0].server != nullptr);
  CHECK(pool.opening_count() == 2);
  for (const FakeClient& c : clients) CHECK(c.error_code.empty());
}

TEST_CASE("probes: 57P03 is probed like an outage; 53300 and probes turned off are not") {
  FakeHost host;
  SUBCASE("57P03") {
    Pool& pool = host.pool();
    FakeClient a;
    pool.request_welcome(&a);
    host.servers.back()->fail_login(LoginFailure::kNoCapacity, sqlstate::kCannotConnectNow,
                                    "the database system is starting up");
    CHECK_FALSE(a.fatal);  // Clients keep waiting.
    pool.tick(host.now_);
    CHECK(host.probes == 1);
    // A probe that connects after the backoff ran out changes nothing.
    host.now_ = host.upstream().retry_at();
    pool.on_probe_done(true);
    CHECK(pool.opening_count() == 0);
    pool.tick(host.now_);
    CHECK(pool.opening_count() == 1);
  }
  SUBCASE("53300") {
    Pool& pool = host.pool();
    FakeClient a;
    pool.request_welcome(&a);
    host.servers.back()->fail_login(LoginFailure::kNoCapacity, "53300", "too many clients");
    pool.tick(host.now_);
    CHECK(host.probes == 0);
  }
  SUBCASE("server_probe_interval = 0") {
    host.config_.server_probe_interval = 0ms;
    Pool& pool = host.pool();
    FakeClient a;
    pool.request_welcome(&a);
    host.servers.back()->fail_login(LoginFailure::kUnreachable, "08001", "connection refused");
    pool.tick(host.now_);
    CHECK(host.probes == 0);
  }
  SUBCASE("no probe without demand") {
    Pool& pool = host.pool();
    FakeClient a;
    pool.request_welcome(&a);
    host.servers.back()->fail_login(LoginFailure::kUnreachable, "08001", "connection refused");
    pool.forget(&a);
    pool.tick(host.now_);
    CHECK(host.probes == 0);
  }
}

}  // namespace
}  // namespace pgmux::proxy
