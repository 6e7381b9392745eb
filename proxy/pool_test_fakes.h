// Fakes for the Pool and Upstream tests: an injected clock and fake
// connections, no sockets, no loop, no PostgreSQL.
#pragma once

#include <doctest/doctest.h>

#include <chrono>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/pool.h"

namespace pgmux::proxy::pool_fakes {

using namespace std::chrono_literals;

inline constexpr TimeMs kNever = std::numeric_limits<TimeMs>::max() / 2;

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
  void start_survey() override {
    checking = true;
    checking_since_ = clock_;
  }
  // The server answered the budget survey at `now` with `survey`.
  void answer_survey(TimeMs now, const BudgetSurvey& survey) {
    checking = false;
    idle_since_ = now;
    pool_.on_survey(this, survey);
  }
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
    // Budget surveys, too, only where a test asks for them.
    config_.budget_survey_interval = 0s;
    database_.name = "app";
    database_.upstream.host = "127.0.0.1";
    database_.upstream.port = 5432;
  }

  TimeMs now() const override { return now_; }
  std::mt19937_64& rng() override { return rng_; }
  const config::Config& config() const override { return config_; }
  bool stopping() const override { return false; }
  bool draining_clients() const override { return draining; }
  bool holding_servers() const override { return paused_; }
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
  bool draining = false;
  bool paused_ = false;

 private:
  std::mt19937_64 rng_{42};
  config::Database database_;
  std::unique_ptr<Upstream> upstream_;
  std::unique_ptr<Pool> pool_;
};

// A pool with a welcome already (one server logged in, then closed).
inline void warm_up(FakeHost& host) {
  Pool& pool = host.pool();
  FakeClient first;
  pool.request_welcome(&first);
  REQUIRE(host.servers.size() == 1);
  host.servers.back()->log_in(host.now_);
  REQUIRE(first.welcomed);
  REQUIRE(pool.has_welcome());
}

}  // namespace pgmux::proxy::pool_fakes
