// The Proxy's operations that change its course while it runs: the drains
// (SIGTERM / SHUTDOWN WAIT_FOR_CLIENTS, SIGINT / SHUTDOWN WAIT_FOR_SERVERS)
// and reload (SIGHUP / RELOAD). The rest of the Proxy is in proxy.cpp.
//
// A drain closes the listener at once and sets draining_; where each client's
// session ends is decided at its transaction boundaries: ClientConn's
// process_idle (an idle client, or one whose server was just released) and
// Link::maybe_release (a pinned client). The janitor calls check_drain every
// tick to end the drain when its condition holds or shutdown_timeout passes.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "config/diff.h"
#include "protocol/sqlstate.h"
#include "proxy/log.h"
#include "proxy/notify.h"
#include "proxy/proxy.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;
using protocol::Error;

namespace {

const char* mode_name(Proxy::ShutdownMode mode) {
  switch (mode) {
    case Proxy::ShutdownMode::kWaitForClients:
      return "WAIT_FOR_CLIENTS";
    case Proxy::ShutdownMode::kWaitForServers:
      return "WAIT_FOR_SERVERS";
    default:
      return "immediate";
  }
}

TlsVerify verify_for(config::SslMode mode, const std::string& root_cert) {
  switch (mode) {
    case config::SslMode::kVerifyFull:
      return TlsVerify::kFull;
    case config::SslMode::kVerifyCa:
      return TlsVerify::kCa;
    case config::SslMode::kRequire:
      // As libpq: with a root certificate given, require checks the chain.
      return root_cert.empty() ? TlsVerify::kNone : TlsVerify::kCa;
    default:
      return TlsVerify::kNone;
  }
}

}  // namespace

// ---- Drain --------------------------------------------------------------------

void Proxy::shutdown(ShutdownMode mode) {
  if (stopping_) return;
  if (mode == ShutdownMode::kImmediate || draining_) {
    spdlog::info("shutdown: {}stopping now, closing {} clients",
                 draining_ ? "a second request while draining: " : "", client_count_);
    stop();
    return;
  }
  draining_ = true;
  drain_mode_ = mode;
  notify_systemd("STOPPING=1");
  drain_deadline_ = now() + static_cast<uint64_t>(config_.shutdown_timeout.count());
  if (listener_open_) {
    listener_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  }
  spdlog::info(
      "shutdown {}: no longer accepting connections; {} clients, {} servers in a transaction; "
      "waiting at most {} ms (shutdown_timeout)",
      mode_name(mode), client_count_, busy_servers(), config_.shutdown_timeout.count());
  if (mode == ShutdownMode::kWaitForClients) {
    // A client between transactions goes now; one in a transaction (or
    // waiting for a server, which it will get) at the end of it; one still
    // logging in has started nothing.
    for (auto& client : slots_) {
      if (client == nullptr) continue;
      switch (client->state()) {
        case ClientConn::State::kWaitingForServer:
        case ClientConn::State::kClosing:
          break;
        case ClientConn::State::kActive:
          client->server()->link().on_drain();
          break;
        default:
          client->fail(sqlstate::kAdminShutdown, kAdminShutdownMessage);
          break;
      }
    }
  }
  check_drain(now());
}

size_t Proxy::busy_servers() const {
  size_t busy = 0;
  for (const auto& [id, server] : servers_) {
    if (server->pool_list != PoolList::kActive) continue;
    const Link& link = server->link();
    if (!(link.pinned() && link.clean())) ++busy;
  }
  return busy;
}

void Proxy::check_drain(TimeMs t) {
  if (!draining_ || stopping_) return;
  if (drain_mode_ == ShutdownMode::kWaitForClients && client_count_ == 0) {
    spdlog::info("shutdown: every client has left; stopping");
    stop();
    return;
  }
  if (drain_mode_ == ShutdownMode::kWaitForServers && busy_servers() == 0) {
    spdlog::info("shutdown: no server is in a transaction; stopping, closing {} clients",
                 client_count_);
    stop();
    return;
  }
  if (t >= drain_deadline_) {
    spdlog::info(
        "shutdown: shutdown_timeout reached with {} clients left and {} servers in a "
        "transaction; stopping now",
        client_count_, busy_servers());
    stop();
  }
}

// ---- Reload -------------------------------------------------------------------

Upstream& Proxy::upstream_for(const std::string& endpoint) {
  for (auto& existing : upstreams_) {
    if (existing->endpoint() == endpoint) return *existing;
  }
  upstreams_.push_back(
      std::make_unique<Upstream>(endpoint, config_.max_server_connections, config_));
  return *upstreams_.back();
}

protocol::Result<std::unique_ptr<TlsContext>> Proxy::upstream_tls_for(
    const config::Database& database) {
  const config::Upstream& up = database.upstream;
  // allow needs a context too: it retries a refused plaintext login with TLS.
  if (up.sslmode == config::SslMode::kDisable) return std::unique_ptr<TlsContext>();
  auto context = TlsContext::client(verify_for(up.sslmode, up.sslrootcert), up.sslrootcert,
                                    up.sslcert, up.sslkey);
  if (!context) {
    return Error{"", "TLS to the upstream of database \"" + database.name +
                         "\": " + context.error().message};
  }
  return std::move(*context);
}

protocol::Status Proxy::reload() {
  if (stopping_ || draining_) return Error{"", "pgmux is shutting down"};
  // systemd's notify-reload protocol: RELOADING=1, then READY=1 whatever
  // the outcome (a rejected reload leaves pgmux running as before).
  notify_systemd_reloading();
  protocol::Status status = apply_reload();
  notify_systemd("READY=1");
  return status;
}

protocol::Status Proxy::apply_reload() {
  protocol::Result<config::Config> loaded = config::load(load_options_);
  if (!loaded) {
    spdlog::error("reload: the new configuration is rejected, the running one stays: {}",
                  loaded.error().message);
    return loaded.error();
  }
  config::Config next = std::move(*loaded);
  const config::ConfigDiff diff = config::diff(config_, next);

  // Everything that can fail comes first, so a reload is applied whole or
  // not at all: the TLS contexts of new and reconnecting databases.
  std::vector<std::pair<std::string, std::unique_ptr<TlsContext>>> contexts;
  auto listed = [](const std::vector<std::string>& names, const std::string& name) {
    return std::find(names.begin(), names.end(), name) != names.end();
  };
  for (const config::Database& database : next.databases) {
    Pool* pool = nullptr;
    for (auto& p : pools_) {
      if (p->name() == database.name) pool = p.get();
    }
    // A retired pool that comes back is reconnected too (its servers may be
    // older than the settings).
    const bool fresh = pool == nullptr || pool->retired() ||
                       listed(diff.reconnect_databases, database.name) ||
                       !config::same_connection(pool->database().upstream, database.upstream);
    if (!fresh) continue;
    auto context = upstream_tls_for(database);
    if (!context) {
      spdlog::error("reload: the new configuration is rejected, the running one stays: {}",
                    context.error().message);
      return context.error();
    }
    contexts.emplace_back(database.name, std::move(*context));
  }

  // What needs a restart keeps its running value (and says so).
  for (const std::string& key : diff.restart_keys) {
    spdlog::warn("reload: {} changed; it takes effect only after a restart", key);
  }
  next.listen_host = config_.listen_host;
  next.listen_port = config_.listen_port;
  next.so_reuseport = config_.so_reuseport;
  next.busy_poll_us = config_.busy_poll_us;
  next.client_tls = config_.client_tls;
  next.client_tls_cert_file = config_.client_tls_cert_file;
  next.client_tls_key_file = config_.client_tls_key_file;
  next.metrics_host = config_.metrics_host;
  next.metrics_port = config_.metrics_port;
  next.log_format = config_.log_format;
  for (const std::string& warning : next.warnings) spdlog::warn("{}", warning);

  // Derived SCRAM secrets of users whose password changed or who are gone.
  for (const std::string& user : diff.changed_users) scram_secrets_.erase(user);
  if (next.log_level != config_.log_level) {
    spdlog::info("reload: log_level {} -> {}", config_.log_level, next.log_level);
    set_log_level(next.log_level);
  }
  // The Config stays at its address: connections and Links refer to it.
  config_ = std::move(next);
  for (auto& upstream : upstreams_) upstream->configure(config_.max_server_connections, config_);

  for (auto& [name, context] : contexts) {
    const config::Database& database = *config_.find_database(name);
    Upstream& upstream = upstream_for(database.upstream.endpoint());
    Pool* pool = nullptr;
    for (auto& p : pools_) {
      if (p->name() == name) pool = p.get();
    }
    if (pool == nullptr) {
      pools_.push_back(std::make_unique<Pool>(*this, database, upstream));
      pool = pools_.back().get();
      spdlog::info("reload: database \"{}\" added -> {}/{} as user \"{}\"", name,
                   database.upstream.endpoint(), database.upstream.dbname, database.upstream.user);
    } else {
      spdlog::info(
          "reload: database \"{}\": connection settings changed; its {} idle servers close now, "
          "the others when released",
          name, pool->idle_count());
      pool->reconfigure(database, upstream, /*reconnect=*/true);
    }
    pool->unretire();
    pool->set_upstream_tls(std::move(context));
  }
  for (auto& pool : pools_) {
    const config::Database* database = config_.find_database(pool->name());
    if (database == nullptr) {
      if (!pool->retired()) {
        pool->retire();
        spdlog::info(
            "reload: database \"{}\" removed: no new logins; its {} clients are served until "
            "they disconnect",
            pool->name(), pool->client_count());
      }
      continue;
    }
    // Settings that need no new servers (the TLS files compare equal).
    if (!pool->retired()) pool->reconfigure(*database, pool->upstream(), false);
  }
  spdlog::info(
      "reload: applied: {} databases ({} added, {} removed, {} reconnecting), {} users ({} "
      "changed), max_server_connections {}, min_server_connections {}",
      config_.databases.size(), diff.added_databases.size(), diff.removed_databases.size(),
      diff.reconnect_databases.size(), config_.users.size(), diff.changed_users.size(),
      config_.max_server_connections, config_.min_server_connections);
  for (auto& pool : pools_) pool->tick(now());
  return protocol::Ok{};
}

}  // namespace pgmux::proxy
