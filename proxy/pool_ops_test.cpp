// Pool tests of the admin console's operations: PAUSE, RESUME, RECONNECT
// and closing every server (KILL).
#include <doctest/doctest.h>

#include <chrono>
#include <vector>

#include "proxy/pool.h"
#include "proxy/pool_test_fakes.h"

namespace pgmux::proxy {
namespace {

using namespace pool_fakes;

TEST_CASE("pause: idle servers close now, busy ones at release; clients queue until resume") {
  FakeHost host;
  host.config_.max_server_connections = 2;
  warm_up(host);
  Pool& pool = host.pool();
  FakeClient busy;
  pool.acquire(&busy);
  REQUIRE(busy.server != nullptr);
  host.open_server(pool);  // A second server, idle.
  host.servers.back()->log_in(host.now_);
  REQUIRE(pool.idle_count() == 1);

  pool.pause();
  CHECK(pool.paused());
  CHECK(pool.idle_count() == 0);
  CHECK(pool.server_count() == 1);  // The busy one stays until released.

  FakeClient late;
  pool.acquire(&late);
  CHECK(late.pool_list == PoolList::kWaiting);
  CHECK(pool.opening_count() == 0);  // Nothing opens while paused.

  pool.release(busy.server);
  CHECK(busy.server == nullptr);
  CHECK(late.server == nullptr);  // Closed, not handed to the waiter.
  CHECK(pool.server_count() == 0);
  host.now_ += 100;
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);
  CHECK(pool.waiting_count() == 1);

  pool.resume();
  CHECK_FALSE(pool.paused());
  REQUIRE(pool.opening_count() == 1);
  host.servers.back()->log_in(host.now_);
  CHECK(late.server != nullptr);
  CHECK(pool.waiting_count() == 0);
}

TEST_CASE("a client queued while paused still times out after query_wait_timeout") {
  FakeHost host;
  warm_up(host);
  Pool& pool = host.pool();
  pool.pause();
  FakeClient waiter;
  pool.acquire(&waiter);
  host.now_ += 2001;
  pool.tick(host.now_);
  CHECK(waiter.error_code == "53300");
  CHECK(pool.waiting_count() == 0);
}

TEST_CASE("reconnect: old servers close at their next release, new ones serve") {
  FakeHost host;
  host.config_.max_server_connections = 2;
  warm_up(host);
  Pool& pool = host.pool();
  FakeClient busy;
  pool.acquire(&busy);
  REQUIRE(busy.server != nullptr);
  host.open_server(pool);
  host.servers.back()->log_in(host.now_);
  REQUIRE(pool.idle_count() == 1);

  pool.reconnect();
  CHECK(pool.idle_count() == 0);   // The idle one closed at once.
  CHECK(pool.stale_count() == 1);  // The busy one is marked.
  FakeServer* old = static_cast<FakeServer*>(busy.server);
  pool.release(busy.server);
  CHECK(old->closed);
  CHECK(pool.stale_count() == 0);

  // A fresh server is not stale and goes back to idle at release.
  FakeClient next;
  pool.acquire(&next);
  REQUIRE(pool.opening_count() == 1);
  host.servers.back()->log_in(host.now_);
  REQUIRE(next.server != nullptr);
  CHECK(pool.stale_count() == 0);
  pool.release(next.server);
  CHECK(pool.idle_count() == 1);
}

TEST_CASE("close_servers closes every server in every list") {
  FakeHost host;
  host.config_.max_server_connections = 3;
  warm_up(host);
  Pool& pool = host.pool();
  FakeClient busy;
  pool.acquire(&busy);
  host.open_server(pool);
  host.servers.back()->log_in(host.now_);  // Idle.
  host.open_server(pool);                  // Still opening.
  REQUIRE(pool.server_count() == 3);
  pool.pause();
  pool.close_servers("KILL");
  CHECK(pool.server_count() == 0);
  CHECK(host.live().empty());
  CHECK(host.upstream().open() == 0);
}

}  // namespace
}  // namespace pgmux::proxy
