// Pool tests of idle servers: recycling, trimming, warm-up, hand-out checks.
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "proxy/pool.h"
#include "proxy/pool_test_fakes.h"

namespace pgmux::proxy {
namespace {

using namespace std::chrono_literals;
using namespace pool_fakes;

TEST_CASE("recycling: at most one expired idle server per tick") {
  FakeHost host;
  host.config_.max_server_connections = 3;
  Pool& pool = host.pool();
  for (int i = 0; i < 3; ++i) host.open_server(pool);
  for (FakeServer* s : host.live()) s->log_in(host.now_, host.now_ + 1000);
  CHECK(pool.idle_count() == 3);
  host.now_ += 1000;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 2);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 1);
  for (const auto& s : host.servers) {
    if (s->closed) CHECK(s->close_reason == std::string("server_lifetime reached"));
  }

  // An expired server in use is recycled when it is released, not before.
  FakeClient c;
  pool.acquire(&c);
  REQUIRE(c.server != nullptr);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.active_count() == 1);
  pool.release(c.server);
  CHECK(pool.idle_count() == 0);
  CHECK(pool.active_count() == 0);
}

TEST_CASE("idle trim above min_server_connections, and the warm minimum") {
  FakeHost host;
  host.config_.max_server_connections = 4;
  host.config_.min_server_connections = 2;
  host.config_.server_idle_timeout = 10s;
  Pool& pool = host.pool();

  pool.tick(host.now_);
  CHECK(pool.opening_count() == 2);  // Warmed at once.
  for (FakeServer* s : host.live()) s->log_in(host.now_);
  host.open_server(pool);
  host.open_server(pool);
  host.servers[2]->log_in(host.now_);
  host.servers[3]->log_in(host.now_);
  CHECK(pool.idle_count() == 4);

  host.now_ += 9999;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 4);
  host.now_ += 1;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 2);  // Down to the minimum, not below.
  host.now_ += 60000;
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 2);

  // A server lost is replaced by the next tick.
  host.live().front()->close("the upstream closed the connection");
  CHECK(pool.idle_count() == 1);
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 1);
}

TEST_CASE(
    "budget_sharing off: a refused warm-up stops further warming until the backoff ends, then one "
    "at a time") {
  FakeHost host;
  host.config_.budget_sharing = config::BudgetSharing::kOff;
  host.config_.max_server_connections = 5;
  host.config_.min_server_connections = 3;
  Pool& pool = host.pool();
  pool.tick(host.now_);
  REQUIRE(pool.opening_count() == 3);
  host.servers[0]->fail_login(LoginFailure::kNoCapacity, "53300", "too many clients already");
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 2);  // Nothing new.
  host.servers[1]->fail_login(LoginFailure::kNoCapacity, "53300", "too many clients already");
  host.servers[2]->fail_login(LoginFailure::kNoCapacity, "53300", "too many clients already");
  host.now_ = host.upstream().retry_at() - 1;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);
  host.now_ += 1;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 1);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 1);
  host.live().back()->log_in(host.now_);
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 1);
  CHECK(pool.opening_count() == 2);  // The rest of the minimum.
}

TEST_CASE("hand-out: a server found dead is closed and the next one used; nothing waits") {
  FakeHost host;
  warm_up(host);
  Pool& pool = host.pool();
  // Two idle servers: the hottest (front) is dead.
  FakeClient a, b;
  pool.acquire(&a);
  pool.acquire(&b);
  REQUIRE(host.servers.size() >= 2);
  for (FakeServer* s : host.live()) {
    if (s->pooled_client() == nullptr && !s->closed) s->log_in(host.now_);
  }
  REQUIRE(a.server != nullptr);
  REQUIRE(b.server != nullptr);
  auto* hot = static_cast<FakeServer*>(b.server);
  pool.release(a.server);
  pool.release(b.server);  // b's server is now the front of the idle list.
  REQUIRE(pool.idle_count() == 2);
  hot->alive = false;
  FakeClient c;
  pool.acquire(&c);
  CHECK(hot->closed);
  CHECK(c.server != nullptr);
  CHECK(c.server != hot);
  CHECK(pool.waiting_count() == 0);
}

TEST_CASE("server_check_delay: a stale idle server is checked first; the client gets it after") {
  FakeHost host;
  host.config_.server_check_delay = 30s;
  host.config_.server_connect_timeout = 5s;
  host.config_.query_wait_timeout = 30s;
  warm_up(host);
  Pool& pool = host.pool();
  FakeClient a;
  pool.acquire(&a);
  REQUIRE(a.server != nullptr);
  auto* server = static_cast<FakeServer*>(a.server);
  pool.release(server);

  SUBCASE("fresh: handed out with no check") {
    host.now_ += 29'000;
    FakeClient b;
    pool.acquire(&b);
    CHECK(b.server == server);
    CHECK_FALSE(server->checking);
  }
  SUBCASE("stale: checked, the client waits, then gets it") {
    host.now_ += 30'000;
    FakeClient b;
    pool.acquire(&b);
    CHECK(b.server == nullptr);
    CHECK(server->checking);
    CHECK(pool.checking_count() == 1);
    CHECK(pool.waiting_count() == 1);
    CHECK(pool.opening_count() == 0);  // The server being checked is the supply.
    server->pass_check(host.now_);
    CHECK(b.server == server);
    CHECK(pool.checking_count() == 0);
    CHECK(pool.waiting_count() == 0);
  }
  SUBCASE("stale and silent: closed after server_connect_timeout, a new one opens") {
    host.now_ += 30'000;
    FakeClient b;
    pool.acquire(&b);
    REQUIRE(server->checking);
    host.now_ += 4'900;
    pool.tick(host.now_);
    CHECK_FALSE(server->closed);
    host.now_ += 200;
    pool.tick(host.now_);
    CHECK(server->closed);
    CHECK(pool.checking_count() == 0);
    REQUIRE(pool.opening_count() == 1);
    host.servers.back()->log_in(host.now_);
    CHECK(b.server == host.servers.back().get());
    CHECK(pool.waiting_count() == 0);
  }
}

}  // namespace
}  // namespace pgmux::proxy
