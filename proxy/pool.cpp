#include "proxy/pool.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <optional>

#include "protocol/sqlstate.h"
#include "proxy/proxy.h"

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

}  // namespace

// ---- Upstream ---------------------------------------------------------------

Upstream::Upstream(std::string endpoint, uint32_t cap, const config::Config& config)
    : endpoint_(std::move(endpoint)),
      cap_(cap),
      retry_initial_ms_(static_cast<uint64_t>(config.server_retry_initial.count())),
      retry_max_ms_(static_cast<uint64_t>(config.server_retry_max.count())) {}

uint64_t Upstream::on_failure(TimeMs now, std::mt19937_64& rng) {
  ++failures_;
  uint64_t delay = retry_initial_ms_;
  for (uint32_t i = 1; i < failures_ && delay < retry_max_ms_; ++i) delay *= 2;
  delay = std::min(delay, retry_max_ms_);
  // +-25 % jitter, so many pgmux instances do not retry in lockstep.
  std::uniform_real_distribution<double> jitter(0.75, 1.25);
  delay = static_cast<uint64_t>(static_cast<double>(delay) * jitter(rng));
  retry_at_ = now + delay;
  return delay;
}

// ---- Pool ---------------------------------------------------------------------

Pool::Pool(Proxy& proxy, const config::Database& database, Upstream& upstream)
    : proxy_(proxy), database_(database), upstream_(upstream) {
  upstream_.pools().push_back(this);
}

void Pool::request_welcome(ClientConn* client) {
  if (has_welcome()) {
    client->welcome(welcome_params_);
    return;
  }
  welcome_.push_back(client);
  launch_if_needed(proxy_.now());
}

void Pool::acquire(ClientConn* client) {
  const TimeMs now = proxy_.now();
  const auto check_ms = static_cast<uint64_t>(proxy_.config().server_check_delay.count());
  while (ServerConn* server = idle_.front()) {
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
  client->set_waiting(now);
  waiting_.push_back(client);
  launch_if_needed(now);
}

void Pool::forget(ClientConn* client) {
  if (client->state() == ClientConn::State::kWaitingForServer) {
    waiting_.remove(client);
  } else {
    welcome_.remove(client);
  }
}

void Pool::attach(ServerConn* server, ClientConn* client) {
  link(server, PoolList::kActive);
  server->attach(client);
  client->attach(server);
}

void Pool::on_server_opening(ServerConn* server) {
  link(server, PoolList::kOpening);
  upstream_.on_opened();
}

void Pool::on_server_ready(ServerConn* server) {
  unlink(server);
  if (upstream_.failures() > 0) {
    spdlog::info("{}: the upstream accepts connections again", server->tag());
  }
  upstream_.on_success();
  if (!has_welcome()) {
    welcome_params_ = server->parameters();
    if (welcome_params_.empty()) welcome_params_.emplace_back("server_version", "unknown");
    set_baseline();
    while (ClientConn* client = welcome_.pop_front()) client->welcome(welcome_params_);
  }
  offer(server);
  // A good login after a failure: open the rest of what waiting clients need.
  launch_if_needed(proxy_.now());
}

void Pool::on_server_checked(ServerConn* server) {
  unlink(server);
  offer(server);
}

void Pool::set_baseline() {
  // Reported parameters a session cannot change are not tracked.
  static constexpr std::array<std::string_view, 7> kFixed = {
      "server_version", "server_encoding", "integer_datetimes",   "is_superuser",
      "session_authorization", "in_hot_standby", "scram_iterations"};
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

void Pool::release(ServerConn* server) {
  ClientConn* client = server->client();
  unlink(server);
  server->detach();
  offer(server);
  if (client != nullptr) client->on_server_released();
}

void Pool::offer(ServerConn* server) {
  const TimeMs now = proxy_.now();
  if (now >= server->expires_at() && !proxy_.stopping()) {
    // Recycled at a transaction boundary only, never mid-transaction.
    server->close("server_lifetime reached");
    return;
  }
  if (ClientConn* client = waiting_.pop_front()) {
    attach(server, client);
    return;
  }
  link(server, PoolList::kIdle, /*front=*/true);
}

void Pool::on_server_login_failed(ServerConn* server, const protocol::Error& error,
                                  LoginFailure kind) {
  const TimeMs now = proxy_.now();
  upstream_.set_last_error(error.sqlstate + " " + error.message);
  const uint64_t delay = upstream_.on_failure(now, proxy_.rng());
  const size_t waiting = waiting_.size() + welcome_.size();
  if (kind == LoginFailure::kNoCapacity) {
    spdlog::warn("{}: no capacity upstream ({} {}); {} clients waiting; retrying in {} ms",
                 server->tag(), error.sqlstate, error.message, waiting, delay);
    return;
  }
  if (kind == LoginFailure::kUnreachable) {
    spdlog::warn("{}: {}; {} clients waiting; retrying in {} ms", server->tag(), error.message,
                 waiting, delay);
    return;
  }
  // The upstream rejected the login itself (wrong password, no such
  // database...): waiting would not help, so tell the clients now.
  spdlog::error("{}: the upstream rejected pgmux's login: {} {}; failing {} waiting clients; "
                "retrying in {} ms",
                server->tag(), error.sqlstate, error.message, waiting, delay);
  fail_waiters(error);
}

void Pool::fail_waiters(const protocol::Error& error) {
  const std::string message = "pgmux could not log in to the upstream: " + error.message;
  while (ClientConn* client = welcome_.pop_front()) client->fail(error.sqlstate, message);
  while (ClientConn* client = waiting_.pop_front()) client->fail_request(error.sqlstate, message, {});
}

void Pool::on_server_closed(ServerConn* server) {
  unlink(server);
  upstream_.on_closed();
  if (!proxy_.stopping()) launch_if_needed(proxy_.now());
}

IntrusiveList<ServerConn, PoolLink>& Pool::list(PoolList where) {
  switch (where) {
    case PoolList::kOpening:
      return opening_;
    case PoolList::kIdle:
      return idle_;
    case PoolList::kChecking:
      return checking_;
    default:
      return active_;
  }
}

void Pool::link(ServerConn* server, PoolList where, bool front) {
  unlink(server);
  if (front) {
    list(where).push_front(server);
  } else {
    list(where).push_back(server);
  }
  server->pool_list = where;
}

void Pool::unlink(ServerConn* server) {
  if (server->pool_list != PoolList::kNone) list(server->pool_list).remove(server);
  server->pool_list = PoolList::kNone;
}

void Pool::launch_if_needed(TimeMs now) {
  if (proxy_.stopping()) return;
  size_t demand = waiting_.size() + (!has_welcome() && !welcome_.empty() ? 1 : 0);
  size_t supply = opening_.size() + checking_.size();
  while (demand > supply && upstream_.may_connect(now)) {
    // After a failure, probe with one connection before opening many.
    if (upstream_.failures() > 0 && supply > 0) return;
    if (!upstream_.has_room()) {
      // The cap is shared: an idle server of another pool on this upstream
      // makes room for ours.
      bool freed = false;
      for (Pool* other : upstream_.pools()) {
        if (other != this && other->give_up_idle_server()) {
          freed = true;
          break;
        }
      }
      if (!freed) return;
    }
    proxy_.open_server(*this);
    ++supply;
  }
}

bool Pool::give_up_idle_server() {
  ServerConn* server = idle_.back();  // The coldest one.
  if (server == nullptr) return false;
  server->close("its slot is needed by another database on the same upstream");
  return true;
}

void Pool::tick(TimeMs now) {
  const config::Config& config = proxy_.config();
  const auto wait_ms = static_cast<uint64_t>(config.query_wait_timeout.count());

  // The queue is FIFO with one deadline, so only its head can be late.
  while (ClientConn* client = waiting_.front()) {
    if (now < client->waiting_since() + wait_ms) break;
    waiting_.remove(client);
    std::string message = "pgmux waited " + seconds_text(wait_ms) + " for one of " +
                          std::to_string(upstream_.cap()) +
                          " busy server connections; the query was not run";
    std::string hint = "Retry the transaction. If this persists, raise query_wait_timeout or "
                       "max_server_connections, or shorten transactions.";
    if (server_count() == 0 && !upstream_.last_error().empty()) {
      message += " (the upstream is not accepting connections: " + upstream_.last_error() + ")";
    }
    spdlog::warn("{}: waited {} for a server; sending 53300", client->tag(), seconds_text(wait_ms));
    client->fail_request(sqlstate::kTooManyConnections, message, hint);
  }
  for (ClientConn* client = welcome_.front(); client != nullptr;) {
    ClientConn* next = welcome_.next(client);
    if (now >= client->accepted_at() + wait_ms) {
      welcome_.remove(client);
      std::string message = "pgmux could not log in to the upstream within " +
                            seconds_text(wait_ms);
      if (!upstream_.last_error().empty()) message += ": " + upstream_.last_error();
      client->fail(sqlstate::kTooManyConnections, message);
    }
    client = next;
  }

  const auto connect_ms = static_cast<uint64_t>(config.server_connect_timeout.count());
  for (ServerConn* server = opening_.front(); server != nullptr;) {
    ServerConn* next = opening_.next(server);
    if (now >= server->opened_at() + connect_ms) {
      on_server_login_failed(server,
                             protocol::Error{std::string(sqlstate::kUnableToConnect),
                                             "connecting and logging in took longer than " +
                                                 seconds_text(connect_ms)},
                             LoginFailure::kUnreachable);
      server->close("server_connect_timeout");
    }
    server = next;
  }

  for (ServerConn* server = checking_.front(); server != nullptr;) {
    ServerConn* next = checking_.next(server);
    if (now >= server->checking_since() + connect_ms) {
      server->close("no answer to the idle check within server_connect_timeout");
    }
    server = next;
  }

  // Recycle at most one expired idle server per tick, so a pool opened all
  // at once is not closed all at once; trim idle servers above the minimum.
  const auto idle_ms = static_cast<uint64_t>(config.server_idle_timeout.count());
  bool recycled = false;
  for (ServerConn* server = idle_.front(); server != nullptr;) {
    ServerConn* next = idle_.next(server);
    if (!recycled && now >= server->expires_at()) {
      server->close("server_lifetime reached");
      recycled = true;
    } else if (now >= server->idle_since() + idle_ms &&
               server_count() > config.min_server_connections) {
      server->close("server_idle_timeout reached");
    }
    server = next;
  }

  // Keep min_server_connections warm (Supavisor drops a pool with no
  // connection, and a warm pool answers the first query at once).
  while (server_count() < config.min_server_connections && upstream_.has_room() &&
         upstream_.may_connect(now) && !(upstream_.failures() > 0 && opening_.size() > 0)) {
    proxy_.open_server(*this);
  }
  launch_if_needed(now);
}

void Pool::close_all() {
  while (ClientConn* client = welcome_.pop_front()) {
    client->fail(sqlstate::kAdminShutdown, "pgmux is shutting down");
  }
  while (ClientConn* client = waiting_.pop_front()) {
    client->fail(sqlstate::kAdminShutdown, "pgmux is shutting down");
  }
  while (ServerConn* server = active_.front()) server->close("pgmux is shutting down");
  while (ServerConn* server = idle_.front()) server->close("pgmux is shutting down");
  while (ServerConn* server = checking_.front()) server->close("pgmux is shutting down");
  while (ServerConn* server = opening_.front()) server->close("pgmux is shutting down");
}

}  // namespace pgmux::proxy
