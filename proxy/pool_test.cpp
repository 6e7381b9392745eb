// Pool and Upstream logic with an injected clock and fake connections: no
// sockets, no loop, no PostgreSQL.
#include "proxy/pool.h"

#include <doctest/doctest.h>

#include <chrono>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "protocol/sqlstate.h"

namespace pgmux::proxy {
namespace {

using namespace std::chrono_literals;
namespace sqlstate = protocol::sqlstate;

constexpr TimeMs kNever = std::numeric_limits<TimeMs>::max() / 2;

class FakeClient;

class FakeServer final : public PooledServer {
 public:
  // `clock` is the host's: read when the pool starts an idle check.
  FakeServer(Pool& pool, const TimeMs& clock) : pool_(pool), clock_(clock), opened_at_(clock) {}

  const std::string& tag() const override { return tag_; }
  const ParameterList& parameters() const override { return params_; }
  TimeMs opened_at() const override { return opened_at_; }
  TimeMs idle_since() const override { return idle_since_; }
  TimeMs expires_at() const override { return expires_at_; }
  PooledClient* pooled_client() const override { return client_; }
  void attach(PooledClient* client) override { client_ = client; }
  void detach() override { client_ = nullptr; }
  bool seems_alive() override { return alive; }
  void start_check() override {
    checking = true;
    checking_since_ = clock_;
  }
  TimeMs checking_since() const override { return checking_since_; }
  // The server answered the idle check at `now`.
  void pass_check(TimeMs now) {
    checking = false;
    idle_since_ = now;
    pool_.on_server_checked(this);
  }
  void close(const char* reason) override {
    if (closed) return;
    closed = true;
    close_reason = reason;
    client_ = nullptr;
    pool_.on_server_closing(this);
  }

  // The login finished at `now`; the server lives until `expires`.
  void log_in(TimeMs now, TimeMs expires = kNever) {
    idle_since_ = now;
    expires_at_ = expires;
    pool_.on_server_ready(this);
  }
  void fail_login(LoginFailure kind, std::string_view code, const std::string& message) {
    pool_.on_server_login_failed(this, protocol::Error{std::string(code), message}, kind);
    close("login failed");
  }
  void set_idle_since(TimeMs t) { idle_since_ = t; }

  bool closed = false;
  std::string close_reason;
  bool alive = true;      // What the hand-out peek sees.
  bool checking = false;  // An idle check was started and not answered.

 private:
  Pool& pool_;
  const TimeMs& clock_;
  TimeMs checking_since_ = 0;
  std::string tag_ = "S-fake";
  ParameterList params_ = {{"server_version", "15.0"}, {"TimeZone", "UTC"}};
  TimeMs opened_at_;
  TimeMs idle_since_ = 0;
  TimeMs expires_at_ = kNever;
  PooledClient* client_ = nullptr;
};

class FakeClient final : public PooledClient {
 public:
  const std::string& tag() const override { return tag_; }
  void welcome(const ParameterList& params) override { welcomed = !params.empty(); }
  void attach(PooledServer* s) override { server = s; }
  void on_server_released() override { server = nullptr; }
  void fail_request(std::string_view code, std::string_view message,
                    std::string_view hint) override {
    error_code = code;
    error_message = message;
    error_hint = hint;
  }
  void fail(std::string_view code, std::string_view message, std::string_view /*hint*/) override {
    fatal = true;
    error_code = code;
    error_message = message;
  }

  PooledServer* server = nullptr;
  bool welcomed = false;
  bool fatal = false;
  std::string error_code;
  std::string error_message;
  std::string error_hint;

 private:
  std::string tag_ = "C-fake";
};

class FakeHost final : public PoolHost {
 public:
  FakeHost() {
    config_.max_server_connections = 3;
    config_.min_server_connections = 0;
    config_.query_wait_timeout = 2s;
    config_.server_retry_initial = 500ms;
    config_.server_retry_max = 8s;
    config_.server_probe_interval = 250ms;
    // Idle checks only where a test asks for them (the clock jumps by
    // minutes in some tests).
    config_.server_check_delay = 24h;
    database_.name = "app";
    database_.upstream.host = "127.0.0.1";
    database_.upstream.port = 5432;
  }

  TimeMs now() const override { return now_; }
  std::mt19937_64& rng() override { return rng_; }
  const config::Config& config() const override { return config_; }
  bool stopping() const override { return false; }
  void open_server(Pool& pool) override {
    servers.push_back(std::make_unique<FakeServer>(pool, now_));  // Binds to now_.
    pool.on_server_opening(servers.back().get());
  }
  void probe(Pool& /*pool*/) override { ++probes; }

  // Builds the upstream and the pool once the test has set the config.
  Pool& pool() {
    if (!pool_) {
      upstream_ =
          std::make_unique<Upstream>("127.0.0.1:5432", config_.max_server_connections, config_);
      pool_ = std::make_unique<Pool>(*this, database_, *upstream_);
    }
    return *pool_;
  }
  Upstream& upstream() { return *upstream_; }
  // Servers not closed yet, in the order they were opened.
  std::vector<FakeServer*> live() const {
    std::vector<FakeServer*> out;
    for (const auto& s : servers) {
      if (!s->closed) out.push_back(s.get());
    }
    return out;
  }

  TimeMs now_ = 1000;
  config::Config config_;
  std::vector<std::unique_ptr<FakeServer>> servers;
  int probes = 0;

 private:
  std::mt19937_64 rng_{42};
  config::Database database_;
  std::unique_ptr<Upstream> upstream_;
  std::unique_ptr<Pool> pool_;
};

// A pool with a welcome already (one server logged in, then closed).
void warm_up(FakeHost& host) {
  Pool& pool = host.pool();
  FakeClient first;
  pool.request_welcome(&first);
  REQUIRE(host.servers.size() == 1);
  host.servers.back()->log_in(host.now_);
  REQUIRE(first.welcomed);
  REQUIRE(pool.has_welcome());
}

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

TEST_CASE("after a failure one login at a time, then the rest once one succeeds") {
  FakeHost host;
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

TEST_CASE("a refused warm-up stops further warming until the backoff ends, then one at a time") {
  FakeHost host;
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
