// Pool tests of reload and drain: server generations, a lowered cap, a
// moved upstream, retirement, and the pause of SHUTDOWN WAIT_FOR_SERVERS.
#include <doctest/doctest.h>

#include <string>

#include "proxy/pool.h"
#include "proxy/pool_test_fakes.h"

namespace pgmux::proxy {
namespace {

using namespace pool_fakes;

config::Database moved(const Pool& pool, const std::string& password) {
  config::Database database = pool.database();
  database.upstream.password = password;
  return database;
}

TEST_CASE("reload: new connection settings close idle servers now and busy ones at release") {
  FakeHost host;
  Pool& pool = host.pool();
  for (int i = 0; i < 3; ++i) host.open_server(pool);
  for (FakeServer* s : host.live()) s->log_in(host.now_);
  FakeClient busy;
  pool.acquire(&busy);
  REQUIRE(busy.server != nullptr);
  host.open_server(pool);  // Still logging in: it may have used the old settings.
  REQUIRE(pool.opening_count() == 1);

  pool.reconfigure(moved(pool, "new"), pool.upstream(), /*reconnect=*/true);
  CHECK(pool.database().upstream.password == "new");
  CHECK(pool.database().name == "app");
  CHECK(pool.generation() == 1);
  CHECK(pool.idle_count() == 0);
  CHECK(pool.opening_count() == 0);
  CHECK(pool.active_count() == 1);
  for (const auto& s : host.servers) {
    if (s.get() != busy.server) {
      CHECK(s->closed);
      CHECK(s->close_reason == std::string("its database's connection settings changed"));
    }
  }
  // The transaction ends: the old server goes instead of idling.
  auto* old = static_cast<FakeServer*>(busy.server);
  pool.release(busy.server);
  CHECK(old->closed);
  CHECK(pool.idle_count() == 0);

  // A server of the new generation is reused as usual.
  FakeClient next;
  pool.acquire(&next);
  REQUIRE(pool.opening_count() == 1);
  host.servers.back()->log_in(host.now_);
  REQUIRE(next.server != nullptr);
  pool.release(next.server);
  CHECK(pool.idle_count() == 1);
}

TEST_CASE("reload: settings that need no new servers keep them") {
  FakeHost host;
  Pool& pool = host.pool();
  host.open_server(pool);
  host.servers[0]->log_in(host.now_);
  pool.reconfigure(pool.database(), pool.upstream(), /*reconnect=*/false);
  CHECK(pool.generation() == 0);
  CHECK(pool.idle_count() == 1);
}

TEST_CASE("reload: a lowered cap closes idle servers on the tick and busy ones at release") {
  FakeHost host;
  Pool& pool = host.pool();
  for (int i = 0; i < 3; ++i) host.open_server(pool);
  for (FakeServer* s : host.live()) s->log_in(host.now_);
  FakeClient a, b;
  pool.acquire(&a);
  pool.acquire(&b);
  REQUIRE(pool.active_count() == 2);
  host.config_.max_server_connections = 1;
  host.upstream().configure(1, host.config_);
  pool.tick(host.now_);
  CHECK(pool.idle_count() == 0);
  CHECK(host.upstream().open() == 2);
  pool.release(a.server);
  CHECK(host.upstream().open() == 1);
  CHECK(pool.idle_count() == 0);
  pool.release(b.server);  // Within the cap again: kept.
  CHECK(pool.idle_count() == 1);
}

TEST_CASE("reload: a pool moved to another upstream; old servers count against the old one") {
  FakeHost host;
  Pool& pool = host.pool();
  host.open_server(pool);
  host.servers[0]->log_in(host.now_);
  FakeClient a;
  pool.acquire(&a);
  Upstream& old_upstream = host.upstream();
  Upstream other("10.0.0.2:5432", 3, host.config_);
  config::Database database = pool.database();
  database.upstream.host = "10.0.0.2";
  pool.reconfigure(database, other, /*reconnect=*/true);
  CHECK(&pool.upstream() == &other);
  CHECK(old_upstream.pools().empty());
  CHECK(other.pools().size() == 1);
  pool.release(a.server);  // Old generation: closed, freed on the old budget.
  CHECK(old_upstream.open() == 0);
  FakeClient b;
  pool.acquire(&b);
  CHECK(other.open() == 1);
  CHECK(old_upstream.open() == 0);
}

TEST_CASE("retired pools keep no warm minimum") {
  FakeHost host;
  host.config_.min_server_connections = 2;
  Pool& pool = host.pool();
  pool.retire();
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 0);
  pool.unretire();
  pool.tick(host.now_);
  CHECK(pool.opening_count() == 2);
}

TEST_CASE("paused (WAIT_FOR_SERVERS): requests wait and released servers idle") {
  FakeHost host;
  Pool& pool = host.pool();
  host.open_server(pool);
  host.servers[0]->log_in(host.now_);
  FakeClient a;
  pool.acquire(&a);
  REQUIRE(a.server != nullptr);
  host.paused_ = true;
  FakeClient b;
  pool.acquire(&b);
  CHECK(b.server == nullptr);
  CHECK(pool.waiting_count() == 1);
  CHECK(pool.opening_count() == 0);  // No server is opened for it either.
  pool.release(a.server);
  CHECK(b.server == nullptr);
  CHECK(pool.idle_count() == 1);
}

}  // namespace
}  // namespace pgmux::proxy
