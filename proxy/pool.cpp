#include "proxy/pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <optional>

#include "protocol/sqlstate.h"
#include "proxy/session_params.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;

namespace {

std::string seconds_text(uint64_t ms) {
  char text[32];
  if (ms % 1000 == 0) {
    std::snprintf(text, sizeof text, "%llu s", static_cast<unsigned long long>(ms / 1000));
  } else {
    std::snprintf(text, sizeof text, "%.1f s", static_cast<double>(ms) / 1000.0);
  }
  return text;
}

ConnectFailure classify_failure(const protocol::Error& error, LoginFailure kind) {
  if (kind == LoginFailure::kUnreachable) return ConnectFailure::kUnreachable;
  if (kind == LoginFailure::kRejected) return ConnectFailure::kAuth;
  if (error.sqlstate == sqlstate::kTooManyConnections) return ConnectFailure::kTooManyClients;
  if (error.sqlstate == sqlstate::kCannotConnectNow) return ConnectFailure::kUnavailable;
  return ConnectFailure::kSupavisor;
}

}  // namespace

Pool::Pool(PoolHost& host, config::Database database, Upstream& upstream)
    : host_(host), database_(std::move(database)), upstream_(&upstream) {
  upstream_->pools().push_back(this);
}

void Pool::reconfigure(const config::Database& database, Upstream& upstream, bool reconnect) {
  // The name is the pool's identity and stays; a ServerLogin holds a view
  // of it.
  database_.upstream = database.upstream;
  if (&upstream != upstream_) {
    auto& mine = upstream_->pools();
    mine.erase(std::remove(mine.begin(), mine.end(), this), mine.end());
    upstream_ = &upstream;
    upstream_->pools().push_back(this);
  }
  if (!reconnect) return;
  ++generation_;
  // Logins under way may have sent the old user or database already: they
  // start again with the new settings. Idle servers close now, active ones
  // at their release (offer).
  while (PooledServer* server = opening_.front()) {
    server->close("its database's connection settings changed");
  }
  while (PooledServer* server = idle_.front()) {
    server->close("its database's connection settings changed");
  }
}

// ---- Clients ----------------------------------------------------------------

void Pool::request_welcome(PooledClient* client) {
  if (has_welcome()) {
    client->welcome(welcome_params_);
    return;
  }
  link(client, PoolList::kWelcome);
  launch_if_needed(host_.now());
}

void Pool::acquire(PooledClient* client) {
  const TimeMs now = host_.now();
  client->queued_at_us = 0;
  if (host_.holding_servers()) {
    link(client, PoolList::kWaiting);  // Until the process stops.
    return;
  }
  const auto check_ms = static_cast<uint64_t>(host_.config().server_check_delay.count());
  while (PooledServer* server = paused_ ? nullptr : idle_.front()) {
    // A server that died while idle is never handed out: nothing of the
    // client's request has gone anywhere yet, so the next one is tried.
    if (!server->seems_alive()) {
      server->close("found closed when about to hand it out");
      continue;
    }
    if (now >= server->idle_since() + check_ms) {
      // Unused for a while: proven alive first; the client waits for it
      // (or for another server) in the queue.
      link(server, PoolList::kChecking);
      server->start_check();
      continue;
    }
    attach(server, client);
    return;
  }
  link(client, PoolList::kWaiting);
  launch_if_needed(now);
}

void Pool::forget(PooledClient* client) { unlink(client); }

void Pool::attach(PooledServer* server, PooledClient* client) {
  ++stats_.totals.server_assignment_count;
  uint64_t waited = 0;
  if (client->queued_at_us != 0) {
    waited = now_us() - client->queued_at_us;
    client->queued_at_us = 0;
    stats_.totals.wait_time_us += waited;
  }
  stats_.queue_wait.observe(waited);
  link(server, PoolList::kActive);
  server->attach(client);
  client->attach(server);
}

void Pool::fail_waiters(const protocol::Error& error) {
  const std::string message = "pgmux could not log in to the upstream: " + error.message;
  while (PooledClient* client = pop(PoolList::kWelcome)) client->fail(error.sqlstate, message, {});
  while (PooledClient* client = pop(PoolList::kWaiting)) {
    client->fail_request(error.sqlstate, message, {});
  }
}

// ---- Servers ----------------------------------------------------------------

void Pool::on_server_opening(PooledServer* server) {
  server->opening_since_us = now_us();
  server->upstream = upstream_;
  server->generation = generation_;
  if (upstream_->failures() > 0) ++stats_.retries;
  link(server, PoolList::kOpening);
  upstream_->on_opening();
}

void Pool::on_server_ready(PooledServer* server) {
  const bool was_failing = upstream_->failures() > 0;
  ++stats_.server_connects;
  stats_.connect_time.observe(now_us() - server->opening_since_us);
  server->upstream->on_logged_in();
  unlink(server);
  if (was_failing) {
    spdlog::info("{}: the upstream accepts connections again", server->tag());
  }
  upstream_->on_success();
  upstream_->on_reached(host_.now());
  if (!has_welcome()) {
    welcome_params_ = server->parameters();
    if (welcome_params_.empty()) welcome_params_.emplace_back("server_version", "unknown");
    set_baseline();
    while (PooledClient* client = pop(PoolList::kWelcome)) client->welcome(welcome_params_);
  }
  offer(server);
  // A good login after a failure: every pool on the upstream opens the rest
  // of what its waiting clients need, not only this one.
  const TimeMs now = host_.now();
  if (!was_failing) {
    launch_if_needed(now);
    return;
  }
  for (Pool* pool : upstream_->pools()) pool->launch_if_needed(now);
}

void Pool::on_server_checked(PooledServer* server) {
  upstream_->on_reached(host_.now());
  unlink(server);
  offer(server);
}

void Pool::set_baseline() {
  // Reported parameters a session cannot change are not tracked.
  static constexpr std::array<std::string_view, 7> kFixed = {
      "server_version",        "server_encoding", "integer_datetimes", "is_superuser",
      "session_authorization", "in_hot_standby",  "scram_iterations"};
  baseline_.clear();
  for (const auto& [name, value] : welcome_params_) {
    std::optional<std::string> normal = normalise_param_name(name);
    if (!normal || std::find(kFixed.begin(), kFixed.end(), *normal) != kFixed.end()) continue;
    baseline_.emplace_back(std::move(*normal), value);
  }
}

const std::string* Pool::baseline_value(std::string_view name) const {
  for (const auto& [known, value] : baseline_) {
    if (known == name) return &value;
  }
  return nullptr;
}

void Pool::release(PooledServer* server) {
  PooledClient* client = server->pooled_client();
  unlink(server);
  server->detach();
  offer(server);
  if (client != nullptr) client->on_server_released();
}

void Pool::offer(PooledServer* server) {
  if (host_.now() >= server->expires_at() && !host_.stopping()) {
    // Recycled at a transaction boundary only, never mid-transaction.
    server->close("server_lifetime reached");
    return;
  }
  if (server->generation != generation_) {
    server->close("RECONNECT, or its database's connection settings changed");
    return;
  }
  if (server->upstream->open() > server->upstream->limit() && !host_.stopping()) {
    server->close(server->upstream->limit() < server->upstream->cap()
                      ? "above pgmux's share of a full upstream budget"
                      : "max_server_connections was lowered");
    return;
  }
  if (paused_) {
    server->close("the pool is paused");
    return;
  }
  if (host_.holding_servers()) {
    link(server, PoolList::kIdle, /*front=*/true);
    return;
  }
  if (!waiting_.empty() && upstream_->wants_busy_survey(host_.now())) {
    // At the cap with clients waiting: this server surveys the budget
    // first (one round trip), then comes back here for the next client.
    upstream_->on_busy_survey_started(host_.now());
    survey_on(server);
    return;
  }
  if (PooledClient* client = pop(PoolList::kWaiting)) {
    attach(server, client);
    return;
  }
  link(server, PoolList::kIdle, /*front=*/true);
}

void Pool::on_server_login_failed(PooledServer* server, const protocol::Error& error,
                                  LoginFailure kind) {
  const TimeMs now = host_.now();
  ++stats_.connect_failures[static_cast<size_t>(classify_failure(error, kind))];
  upstream_->set_last_error(error.sqlstate + " " + error.message);
  // 57P03 (starting up, shutting down) is "no capacity" to the clients, who
  // keep waiting, but the upstream is going down or coming up, not full: a
  // probe can tell when it is back, as for an unreachable one.
  const bool down =
      kind == LoginFailure::kUnreachable || error.sqlstate == sqlstate::kCannotConnectNow;
  const size_t waiting = waiting_.size() + welcome_.size();
  if (kind == LoginFailure::kNoCapacity && !down) {
    // The budget is full: lower the limit (proxy/upstream.h).
    const uint32_t held = upstream_->logged_in();
    const uint32_t before = upstream_->limit();
    const uint64_t delay = upstream_->on_refused(now, host_.rng());
    if (upstream_->adaptive() && held > 0) {
      if (upstream_->limit() < before) {
        spdlog::info(
            "{}: the upstream budget is full ({} {}); holding {} servers, pgmux lowers its "
            "limit from {} to {}; {} clients waiting",
            server->tag(), error.sqlstate, error.message, held, before, upstream_->limit(),
            waiting);
      } else {
        spdlog::debug("{}: refused again ({}); limit {}", server->tag(), error.sqlstate,
                      upstream_->limit());
      }
      return;
    }
    spdlog::warn("{}: no capacity upstream ({} {}); {} clients waiting; retrying in {} ms",
                 server->tag(), error.sqlstate, error.message, waiting, delay);
    return;
  }
  const uint64_t delay = upstream_->on_failure(
      now, host_.rng(), down ? Upstream::Outage::kDown : Upstream::Outage::kFull);
  // One warning per backoff step; probes log at debug.
  const char* sooner = down && upstream_->probes() ? ", or as soon as a probe connects" : "";
  if (kind == LoginFailure::kNoCapacity) {
    spdlog::warn("{}: no capacity upstream ({} {}); {} clients waiting; retrying in {} ms{}",
                 server->tag(), error.sqlstate, error.message, waiting, delay, sooner);
    return;
  }
  if (kind == LoginFailure::kUnreachable) {
    spdlog::warn("{}: {}; {} clients waiting; retrying in {} ms{}", server->tag(), error.message,
                 waiting, delay, sooner);
    return;
  }
  // The upstream rejected the login itself (wrong password, no such
  // database...): waiting would not help, so tell the clients now.
  spdlog::error(
      "{}: the upstream rejected pgmux's login: {} {}; failing {} waiting clients; "
      "retrying in {} ms",
      server->tag(), error.sqlstate, error.message, waiting, delay);
  fail_waiters(error);
}

void Pool::on_server_closing(PooledServer* server) {
  server->upstream->on_closed(server->pool_list == PoolList::kOpening);
  if (server->surveying) {
    server->surveying = false;
    server->upstream->on_survey_lost();
  }
  unlink(server);
  if (!host_.stopping()) launch_if_needed(host_.now());
}

// ---- Lists ------------------------------------------------------------------

Pool::ServerList& Pool::servers(PoolList where) {
  switch (where) {
    case PoolList::kOpening:
      return opening_;
    case PoolList::kIdle:
      return idle_;
    case PoolList::kChecking:
      return checking_;
    default:
      assert(where == PoolList::kActive);
      return active_;
  }
}

Pool::ClientList& Pool::clients(PoolList where) {
  assert(where == PoolList::kWaiting || where == PoolList::kWelcome);
  return where == PoolList::kWaiting ? waiting_ : welcome_;
}

void Pool::link(PooledServer* server, PoolList where, bool front) {
  unlink(server);
  if (front) {
    servers(where).push_front(server);
  } else {
    servers(where).push_back(server);
  }
  server->pool_list = where;
}

void Pool::unlink(PooledServer* server) {
  if (server->pool_list != PoolList::kNone) servers(server->pool_list).remove(server);
  server->pool_list = PoolList::kNone;
}

void Pool::link(PooledClient* client, PoolList where) {
  unlink(client);
  clients(where).push_back(client);
  client->pool_list = where;
  client->pool_since = host_.now();
  if (where == PoolList::kWaiting) client->queued_at_us = now_us();
}

void Pool::unlink(PooledClient* client) {
  if (client->pool_list != PoolList::kNone) clients(client->pool_list).remove(client);
  client->pool_list = PoolList::kNone;
}

PooledClient* Pool::pop(PoolList where) {
  PooledClient* client = clients(where).front();
  if (client != nullptr) unlink(client);
  return client;
}

// ---- Time and capacity ------------------------------------------------------

bool Pool::wants_servers() const {
  const size_t demand = waiting_.size() + (!has_welcome() && !welcome_.empty() ? 1 : 0);
  return demand > opening_.size() + checking_.size() || server_count() < warm_servers(host_.now());
}

void Pool::launch_if_needed(TimeMs now) {
  if (host_.stopping() || host_.holding_servers() || paused_) return;
  const size_t demand = waiting_.size() + (!has_welcome() && !welcome_.empty() ? 1 : 0);
  // After a failure, may_open allows one login at a time until one succeeds.
  // Servers being checked are on their way to a client, like those opening.
  while (demand > opening_.size() + checking_.size() && upstream_->may_open(now)) {
    if (!upstream_->has_room() && !upstream_->raise_limit(now)) {
      // The cap is shared: an idle server of another pool on this upstream
      // makes room for ours.
      bool freed = false;
      for (Pool* other : upstream_->pools()) {
        if (other != this && other->give_up_idle_server()) {
          freed = true;
          break;
        }
      }
      if (!freed) return;
    }
    const size_t before = opening_.size();
    host_.open_server(*this);
    // A server that failed at once is gone again (and the upstream backs off).
    if (opening_.size() == before) return;
  }
}

bool Pool::give_up_idle_server() {
  PooledServer* server = idle_.back();  // The coldest one.
  if (server == nullptr) return false;
  server->close("its slot is needed by another database on the same upstream");
  return true;
}

void Pool::open_needed(TimeMs now) {
  if (host_.stopping() || paused_) return;
  // Keep min_server_connections warm (Supavisor drops a pool with no
  // connection, and a warm pool answers the first query at once); fewer on
  // a shared budget (warm_servers).
  const uint32_t min = warm_servers(now);
  while (server_count() < min && upstream_->has_room() && upstream_->may_open(now)) {
    const size_t before = opening_.size();
    host_.open_server(*this);
    if (opening_.size() == before) break;
  }
  launch_if_needed(now);
  if (wants_servers() && upstream_->wants_probe(now)) {
    upstream_->on_probe_started(now);
    spdlog::debug("{}: probing {}", database_.name, upstream_->endpoint());
    host_.probe(*this);
  }
}

uint32_t Pool::warm_servers(TimeMs now) const {
  const uint32_t min = min_servers();
  // Warming stops when refused; after that, one warm server (enough to keep
  // a Supavisor pool alive) rather than a share nobody agreed on.
  if (upstream_->contended(now)) return 0;
  if (upstream_->shared()) return std::min<uint32_t>(min, 1);
  return min;
}

void Pool::start_survey(TimeMs now) {
  // Only an instance holding an idle server it could give back asks.
  if (idle_.empty() || upstream_->open() < 2 || paused_ || host_.stopping()) return;
  if (!upstream_->wants_survey(now)) return;
  PooledServer* server = idle_.back();  // The coldest one.
  if (!server->seems_alive()) {
    server->close("found closed when about to survey the budget");
    return;
  }
  upstream_->on_survey_started(now);
  survey_on(server);
}

void Pool::survey_on(PooledServer* server) {
  link(server, PoolList::kChecking);
  server->surveying = true;
  server->start_survey();
}

void Pool::on_survey(PooledServer* server, const BudgetSurvey& survey) {
  server->surveying = false;
  const TimeMs now = host_.now();
  const bool was = upstream_->contended(now);
  upstream_->on_survey(now, survey);
  if (!was && upstream_->contended(now)) {
    spdlog::info(
        "{}: the upstream budget is full and shared ({} of the role's {} connections, {} of "
        "{} in all; pgmux holds {}): idle servers above one go back after {} ms",
        database_.name, survey.role_connections, survey.role_limit, survey.connections,
        survey.max_connections, upstream_->logged_in(), Upstream::kIdleLeaseMs);
  }
  on_server_checked(server);
}

void Pool::on_survey_failed(PooledServer* server, const std::string& why) {
  server->surveying = false;
  upstream_->on_survey_failed();
  spdlog::info("{}: the budget survey failed ({}); pgmux relies on refusals alone", server->tag(),
               why);
  on_server_checked(server);
}

void Pool::on_probe_done(bool connected) {
  const TimeMs now = host_.now();
  const bool ended = upstream_->on_probe_done(connected, now);
  spdlog::debug("{}: probe of {} {}", database_.name, upstream_->endpoint(),
                connected ? "connected" : "failed");
  if (!ended || host_.stopping()) return;
  for (Pool* pool : upstream_->pools()) pool->open_needed(now);
}

void Pool::tick(TimeMs now) {
  const config::Config& config = host_.config();
  // max_server_connections was lowered by a reload, or the budget's limit
  // fell: the coldest idle servers go until the upstream is within it.
  while (upstream_->open() > upstream_->limit()) {
    PooledServer* server = idle_.back();
    if (server == nullptr) break;
    server->close(upstream_->limit() < upstream_->cap()
                      ? "above pgmux's share of a full upstream budget"
                      : "max_server_connections was lowered");
  }
  const auto wait_ms = static_cast<uint64_t>(config.query_wait_timeout.count());

  // The queue is FIFO with one deadline, so only its head can be late.
  while (PooledClient* client = waiting_.front()) {
    if (now < client->pool_since + wait_ms) break;
    unlink(client);
    client->queued_at_us = 0;
    ++stats_.queue_timeouts;
    std::string message = "pgmux waited " + seconds_text(wait_ms) + " for one of " +
                          std::to_string(upstream_->cap()) +
                          " busy server connections; the query was not run";
    std::string hint =
        "Retry the transaction. If this persists, raise query_wait_timeout or "
        "max_server_connections, or shorten transactions.";
    if (server_count() == 0 && !upstream_->last_error().empty()) {
      message += " (the upstream is not accepting connections: " + upstream_->last_error() + ")";
    }
    spdlog::warn("{}: waited {} for a server; sending 53300", client->tag(), seconds_text(wait_ms));
    client->fail_request(sqlstate::kTooManyConnections, message, hint);
  }
  // The welcome list is FIFO too.
  while (PooledClient* client = welcome_.front()) {
    if (now < client->pool_since + wait_ms) break;
    unlink(client);
    std::string message = "pgmux could not log in to the upstream within " + seconds_text(wait_ms);
    if (!upstream_->last_error().empty()) message += ": " + upstream_->last_error();
    client->fail(sqlstate::kTooManyConnections, message, {});
  }

  const auto connect_ms = static_cast<uint64_t>(config.server_connect_timeout.count());
  for (PooledServer* server = opening_.front(); server != nullptr;) {
    PooledServer* next = opening_.next(server);
    if (now >= server->opened_at() + connect_ms) {
      on_server_login_failed(
          server,
          protocol::Error{std::string(sqlstate::kUnableToConnect),
                          "connecting and logging in took longer than " + seconds_text(connect_ms)},
          LoginFailure::kUnreachable);
      server->close("server_connect_timeout");
    }
    server = next;
  }

  for (PooledServer* server = checking_.front(); server != nullptr;) {
    PooledServer* next = checking_.next(server);
    if (now >= server->checking_since() + connect_ms) {
      server->close("no answer to the idle check within server_connect_timeout");
    }
    server = next;
  }

  // Recycle at most one expired idle server per tick, so a pool opened all
  // at once is not closed all at once; trim idle servers above the minimum.
  // On a contended budget, idle servers above one go after a short lease:
  // another instance may be waiting for them.
  const bool contended = upstream_->contended(now);
  const uint64_t idle_ms = contended ? Upstream::kIdleLeaseMs
                                     : static_cast<uint64_t>(config.server_idle_timeout.count());
  const uint32_t keep = contended ? std::min<uint32_t>(min_servers(), 1) : min_servers();
  bool recycled = false;
  for (PooledServer* server = idle_.front(); server != nullptr;) {
    PooledServer* next = idle_.next(server);
    if (!recycled && now >= server->expires_at()) {
      server->close("server_lifetime reached");
      recycled = true;
    } else if (now >= server->idle_since() + idle_ms && server_count() > keep) {
      server->close(contended ? "idle while the upstream budget is contended"
                              : "server_idle_timeout reached");
    }
    server = next;
  }
  start_survey(now);

  open_needed(now);
}

// ---- Operations -------------------------------------------------------------

void Pool::pause() {
  if (paused_) return;
  paused_ = true;
  spdlog::info("{}: paused", database_.name);
  while (PooledServer* server = idle_.front()) server->close("the pool is paused");
}

void Pool::resume() {
  if (!paused_) return;
  paused_ = false;
  spdlog::info("{}: resumed", database_.name);
  // The queue formed while paused is served as servers open.
  open_needed(host_.now());
}

void Pool::reconnect() {
  ++generation_;
  spdlog::info("{}: reconnecting: servers close at their next release", database_.name);
  while (PooledServer* server = idle_.front()) server->close("RECONNECT");
  launch_if_needed(host_.now());
}

size_t Pool::stale_count() const {
  size_t stale = 0;
  for (const ServerList* list : {&opening_, &idle_, &checking_, &active_}) {
    for (PooledServer* server = list->front(); server != nullptr; server = list->next(server)) {
      if (server->generation != generation_) ++stale;
    }
  }
  return stale;
}

void Pool::close_servers(const char* reason) {
  while (PooledServer* server = active_.front()) server->close(reason);
  while (PooledServer* server = idle_.front()) server->close(reason);
  while (PooledServer* server = checking_.front()) server->close(reason);
  while (PooledServer* server = opening_.front()) server->close(reason);
}

void Pool::close_all() {
  while (PooledClient* client = pop(PoolList::kWelcome)) {
    client->fail(sqlstate::kAdminShutdown, "pgmux is shutting down", {});
  }
  while (PooledClient* client = pop(PoolList::kWaiting)) {
    client->fail(sqlstate::kAdminShutdown, "pgmux is shutting down", {});
  }
  while (PooledServer* server = active_.front()) server->close("pgmux is shutting down");
  while (PooledServer* server = idle_.front()) server->close("pgmux is shutting down");
  while (PooledServer* server = checking_.front()) server->close("pgmux is shutting down");
  while (PooledServer* server = opening_.front()) server->close("pgmux is shutting down");
}

}  // namespace pgmux::proxy
