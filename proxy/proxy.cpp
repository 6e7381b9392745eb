#include "proxy/proxy.h"

#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "protocol/crypto.h"
#include "protocol/sqlstate.h"
#include "proxy/admin.h"
#include "proxy/cancel.h"
#include "proxy/listen_socket.h"
#include "proxy/log.h"
#include "proxy/metrics_service.h"
#include "proxy/notify.h"
#include "proxy/probe.h"
#include "proxy/stats_period.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;
using protocol::Error;

namespace {

constexpr uint64_t kJanitorPeriodMs = 100;
// A client has this long from accept to a complete startup packet (after the
// TLS handshake, if it asks for TLS): a stalled or partial SSLRequest,
// StartupMessage or CancelRequest is cut off long before
// client_login_timeout, as a legitimate client sends its packet at once.
constexpr uint64_t kStartupTimeoutMs = 5000;

}  // namespace

Proxy::Proxy(config::Config config, uv_loop_t* loop)
    : config_(std::move(config)),
      loop_(loop),
      blocks_(size_t{16} * 1024),
      rng_(std::random_device{}()) {
  for (const config::Database& database : config_.databases) {
    pools_.push_back(
        std::make_unique<Pool>(*this, database, upstream_for(database.upstream.endpoint())));
  }
}

Proxy::~Proxy() = default;

uint16_t Proxy::metrics_port() const { return metrics_ != nullptr ? metrics_->port() : 0; }

protocol::Status Proxy::start() {
  // Writes to a closed socket must fail with EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  for (const std::string& warning : config_.warnings) spdlog::warn("{}", warning);
  mock_seed_.resize(32);
  if (RAND_bytes(reinterpret_cast<unsigned char*>(mock_seed_.data()), 32) != 1) {
    return Error{"", "the OpenSSL random generator failed"};
  }
  if (config_.effective_client_tls() != config::ClientTls::kDisable) {
    auto context = TlsContext::server(config_.client_tls_cert_file, config_.client_tls_key_file);
    if (!context) return Error{"", "client TLS: " + context.error().message};
    client_tls_ = std::move(*context);
  }
  for (auto& pool : pools_) {
    auto context = upstream_tls_for(pool->database());
    if (!context) return context.error();
    if (*context) pool->set_upstream_tls(std::move(*context));
  }
  sockaddr_storage address{};
  const char* host = config_.listen_host.c_str();
  if (uv_ip4_addr(host, config_.listen_port, reinterpret_cast<sockaddr_in*>(&address)) != 0 &&
      uv_ip6_addr(host, config_.listen_port, reinterpret_cast<sockaddr_in6*>(&address)) != 0) {
    return Error{"", "listen: \"" + config_.listen_host + "\" is not an IP address"};
  }
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listener_open_ = true;
  uv_timer_init(loop_, &janitor_);
  janitor_.data = this;
  uv_async_init(loop_, &stop_async_, &Proxy::on_async);
  stop_async_.data = this;
  started_ = true;
  int rc =
      bind_listener(&listener_, reinterpret_cast<const sockaddr*>(&address), config_.so_reuseport);
  if (rc == 0) defer_accept();
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 4096, &Proxy::on_connection);
  if (rc != 0) {
    stop();
    return Error{"", "cannot listen on " + config_.listen_host + ":" +
                         std::to_string(config_.listen_port) + ": " + uv_strerror(rc)};
  }
  sockaddr_storage bound{};
  int length = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &length);
  port_ = ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  if (config_.metrics_enabled()) {
    metrics_ = std::make_unique<MetricsService>(*this);
    protocol::Status listening = metrics_->start();
    if (!listening) {
      stop();
      return listening;
    }
  }
  uv_timer_start(&janitor_, &Proxy::on_janitor, kJanitorPeriodMs, kJanitorPeriodMs);
  started_at_ = now();
  period_started_at_ = started_at_;

  spdlog::info("pgmux listening on {}", format_address(reinterpret_cast<sockaddr*>(&bound)));
  for (auto& pool : pools_) {
    const config::Upstream& up = pool->database().upstream;
    spdlog::info(
        "database \"{}\" -> {}/{} as user \"{}\" (at most {} server connections, {} kept "
        "warm)",
        pool->name(), up.endpoint(), up.dbname, up.user, config_.max_server_connections,
        config_.min_server_connections);
    pool->tick(now());
  }
  return protocol::Ok{};
}

void Proxy::defer_accept() {
  // TCP_DEFER_ACCEPT (Linux; PgBouncer sets it too): the kernel hands over a
  // connection once its first bytes (the startup packet) have arrived, so
  // accepting it and reading them take one wake-up, not two. A client that
  // says nothing is handed over after about a second anyway.
  uv_os_fd_t fd;
  const int seconds = 1;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&listener_), &fd) != 0 ||
      ::setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &seconds, sizeof seconds) != 0) {
    spdlog::debug("TCP_DEFER_ACCEPT is not available: each login takes one more wake-up");
  }
}

void Proxy::run() {
  const uint64_t poll_ns = uint64_t{config_.busy_poll_us} * 1000;
  if (poll_ns == 0) {
    uv_run(loop_, UV_RUN_DEFAULT);
    return;
  }
  // Busy polling: after a read the loop goes on asking the kernel for
  // events without sleeping (epoll_wait with a zero timeout) until
  // busy_poll_us pass with no read, then sleeps as usual. An answer that
  // arrives meanwhile is forwarded without waking a sleeping process, which
  // is most of what the extra hop costs a lone query; the price is a CPU
  // kept busy for that long after every read.
  spdlog::info("busy polling: the loop polls for {} us after each read before it sleeps",
               config_.busy_poll_us);
  uint64_t reads = Stream::reads();
  uint64_t last_read_ns = uv_hrtime();
  for (;;) {
    if (uv_run(loop_, UV_RUN_NOWAIT) == 0) return;
    const uint64_t now_ns = uv_hrtime();
    if (Stream::reads() != reads) {
      reads = Stream::reads();
      last_read_ns = now_ns;
    } else if (now_ns - last_read_ns >= poll_ns) {
      if (uv_run(loop_, UV_RUN_ONCE) == 0) return;
      reads = Stream::reads();
      last_read_ns = uv_hrtime();
    }
  }
}

void Proxy::handle_signals() {
  uv_signal_init(loop_, &sigint_);
  uv_signal_init(loop_, &sigterm_);
  uv_signal_init(loop_, &sighup_);
  sigint_.data = sigterm_.data = sighup_.data = this;
  uv_signal_start(&sigint_, &Proxy::on_signal, SIGINT);
  uv_signal_start(&sigterm_, &Proxy::on_signal, SIGTERM);
  uv_signal_start(&sighup_, &Proxy::on_signal, SIGHUP);
  signals_ = true;
}

void Proxy::on_signal(uv_signal_t* handle, int signum) {
  auto* self = static_cast<Proxy*>(handle->data);
  switch (signum) {
    case SIGHUP:
      spdlog::info("received SIGHUP: reloading the configuration");
      (void)self->reload();  // Logs its outcome.
      break;
    case SIGTERM:
      spdlog::info("received SIGTERM");
      self->shutdown(ShutdownMode::kWaitForClients);
      break;
    default:
      spdlog::info("received SIGINT");
      self->shutdown(ShutdownMode::kWaitForServers);
      break;
  }
}

void Proxy::request_stop() { uv_async_send(&stop_async_); }

void Proxy::on_async(uv_async_t* handle) { static_cast<Proxy*>(handle->data)->stop(); }

void Proxy::stop() {
  if (stopping_) return;
  stopping_ = true;
  if (!draining_) notify_systemd("STOPPING=1");  // A drain has said so already.
  draining_ = true;
  if (listener_open_) {
    listener_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  }
  if (started_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&janitor_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&stop_async_), nullptr);
  }
  if (metrics_ != nullptr) metrics_->stop();
  if (signals_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sighup_), nullptr);
  }
  for (auto& pool : pools_) pool->close_all();
  for (CancelConn* cancel = cancel_order_.front(); cancel != nullptr;) {
    CancelConn* next = cancel_order_.next(cancel);
    cancel->close();
    cancel = next;
  }
  // Cancelled probes report (ignored while stopping) and close later.
  for (auto& [id, entry] : probes_) entry.probe->cancel();
  for (auto& client : slots_) {
    if (client == nullptr) continue;
    if (client->state() == ClientConn::State::kIdle ||
        client->state() == ClientConn::State::kAdmin) {
      client->fail(sqlstate::kAdminShutdown, "pgmux is shutting down");
    } else {
      client->close("pgmux is shutting down");
    }
  }
}

void Proxy::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<Proxy*>(listener->data);
  if (status < 0) {
    spdlog::warn("accept failed: {}", uv_strerror(status));
    return;
  }
  self->accept_client();
}

void Proxy::accept_client() {
  const uint64_t id = next_id();
  uint32_t slot = 0;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  slots_[slot] = std::make_unique<ClientConn>(*this, id, slot);
  ClientConn* client = slots_[slot].get();
  ++client_count_;
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&listener_), client->stream().uv()) != 0) {
    client->close("accept failed");
    return;
  }
  logging_in_.push_back(client);
  starting_.push_back(client);
  client->start();
  if (client_count_ > config_.max_client_conn) {
    spdlog::warn("{}: refused: max_client_conn ({}) reached", client->tag(),
                 config_.max_client_conn);
    client->fail(sqlstate::kTooManyConnections,
                 "too many client connections to pgmux (max_client_conn = " +
                     std::to_string(config_.max_client_conn) + ")");
    return;
  }
  // With TCP_DEFER_ACCEPT the startup packet is usually in already: read it
  // now rather than after another trip through epoll_wait.
  client->stream().try_read();
}

Pool* Proxy::find_pool(std::string_view database) {
  for (auto& pool : pools_) {
    if (pool->name() == database && !pool->retired()) return pool.get();
  }
  return nullptr;
}

void Proxy::open_server(Pool& pool) {
  const uint64_t id = next_id();
  auto owned = std::make_unique<ServerConn>(*this, pool, id);
  ServerConn* server = owned.get();
  servers_.emplace(id, std::move(owned));
  pool.on_server_opening(server);
  server->start();
}

void Proxy::probe(Pool& pool) {
  const config::Upstream& up = pool.database().upstream;
  const uint64_t id = next_id();
  auto owned = std::make_unique<Probe>(static_cast<ProbeEvents&>(*this), id, up.host, up.port);
  Probe* probe = owned.get();
  probes_.emplace(id, ProbeEntry{std::move(owned), &pool, now()});
  if (!probe->start(loop_)) {
    probes_.erase(id);
    pool.on_probe_done(false);
  }
}

void Proxy::on_probe_done(Probe& probe, bool connected) {
  auto it = probes_.find(probe.id());
  if (it != probes_.end()) it->second.pool->on_probe_done(connected);
}

void Proxy::on_probe_closed(Probe& probe) { probes_.erase(probe.id()); }

void Proxy::register_cancel_key(ClientConn* client) {
  // The process id a client sees is its slot (+1), as PostgreSQL's are
  // guessable pids; the 32-bit secret is what authorises a cancel.
  uint32_t secret = 0;
  protocol::fill_random({reinterpret_cast<uint8_t*>(&secret), sizeof secret});
  client->set_cancel_key(static_cast<int32_t>(client->slot() + 1), static_cast<int32_t>(secret));
}

void Proxy::forward_cancel(int32_t pid, int32_t secret) {
  ClientConn* client = nullptr;
  if (pid > 0 && static_cast<size_t>(pid) <= slots_.size()) client = slots_[pid - 1].get();
  if (client == nullptr || client->cancel_pid() != pid || client->cancel_secret() != secret) {
    spdlog::debug("cancel request with an unknown key: ignored");
    return;
  }
  ServerConn* server = client->server();
  if (server == nullptr || server->backend_pid() == 0) {
    spdlog::debug("{}: cancel request while no query runs: ignored", client->tag());
    return;
  }
  spdlog::info("{}: forwarding a cancel request to {}", client->tag(), server->tag());
  const TlsContext* tls = server->stream().tls() ? server->pool().upstream_tls() : nullptr;
  const config::Upstream& up = server->pool().database().upstream;
  open_cancel(reinterpret_cast<const sockaddr*>(&server->peer_address()), server->backend_pid(),
              server->backend_secret(), tls, up.host, up.sslsni);
}

void Proxy::open_cancel(const sockaddr* address, int32_t pid, int32_t secret, const TlsContext* tls,
                        const std::string& host, bool sni) {
  const uint64_t id = next_id();
  auto owned = std::make_unique<CancelConn>(*this, id, pid, secret, tls, host, sni);
  CancelConn* cancel = owned.get();
  cancels_.emplace(id, std::move(owned));
  cancel_order_.push_back(cancel);
  cancel->start(address);
}

const protocol::ScramSecret& Proxy::scram_secret_for(const std::string& user,
                                                     const std::string& password) {
  auto it = scram_secrets_.find(user);
  if (it == scram_secrets_.end() || it->second.first != password) {
    it =
        scram_secrets_
            .insert_or_assign(user, std::make_pair(password, protocol::make_scram_secret(password)))
            .first;
  }
  return it->second.second;
}

void Proxy::on_client_freed(ClientConn* client) {
  const uint32_t slot = client->slot();
  --client_count_;
  slots_[slot].reset();
  free_slots_.push_back(slot);
}

std::unique_ptr<AdminSession> Proxy::open_admin(ClientConn& client, AdminRole role) {
  return std::make_unique<AdminSession>(*this, client, role);
}

bool Proxy::paused() const {
  return std::any_of(pools_.begin(), pools_.end(), [](const auto& pool) { return pool->paused(); });
}

void Proxy::kill(Pool& pool) {
  pool.pause();
  spdlog::info("{}: KILL: closing its clients and servers", pool.name());
  const std::string message = "pgmux: database \"" + pool.name() + "\" was killed by an admin";
  // fail() only starts closing: the slots are freed from close callbacks,
  // after this loop.
  for (auto& client : slots_) {
    if (client == nullptr || client->pool() != &pool) continue;
    if (client->state() == ClientConn::State::kClosing) continue;
    client->fail(sqlstate::kAdminShutdown, message);
  }
  pool.close_servers("KILL");
}

void Proxy::on_server_freed(ServerConn* server) { servers_.erase(server->id()); }

void Proxy::on_cancel_freed(CancelConn* cancel) {
  if (static_cast<CancelLink*>(cancel)->linked()) cancel_order_.remove(cancel);
  cancels_.erase(cancel->id());
}

void Proxy::on_janitor(uv_timer_t* timer) { static_cast<Proxy*>(timer->data)->janitor_tick(); }

void Proxy::end_stats_period(TimeMs t) {
  const uint64_t period_us = (t - period_started_at_) * 1000;
  period_started_at_ = t;
  for (auto& pool : pools_) {
    roll_period(pool->stats(), period_us);
    const PoolGauges gauges{
        pool->client_count(), pool->waiting_count(),
        pool->opening_count() + pool->idle_count() + pool->checking_count() + pool->active_count(),
        pool->active_count()};
    spdlog::info("stats: {}", stats_line(pool->name(), pool->stats(), gauges));
  }
}

void Proxy::janitor_tick() {
  const uint64_t t = now();
  const auto period_ms = static_cast<uint64_t>(config_.stats_period.count());
  if (period_ms > 0 && t >= period_started_at_ + period_ms) end_stats_period(t);
  const auto login_ms = static_cast<uint64_t>(config_.client_login_timeout.count());
  while (ClientConn* client = logging_in_.front()) {
    if (t < client->accepted_at() + login_ms) break;
    logging_in_.remove(client);
    client->fail(sqlstate::kProtocolViolation,
                 "no complete startup packet within the login timeout");
  }
  // The startup deadline is the same for every client and the list is in
  // accept order, so only its head can be late.
  while (ClientConn* client = starting_.front()) {
    if (t < client->accepted_at() + kStartupTimeoutMs) break;
    starting_.remove(client);
    client->fail(sqlstate::kProtocolViolation, "no complete startup packet within " +
                                                   std::to_string(kStartupTimeoutMs / 1000) +
                                                   " s of connecting");
  }
  // A cancel request that has not gone out by server_connect_timeout (an
  // upstream that does not answer the SSLRequest, a connect that hangs) is
  // given up; the same deadline for all, so again only the head can be late.
  const auto connect_ms = static_cast<uint64_t>(config_.server_connect_timeout.count());
  while (CancelConn* cancel = cancel_order_.front()) {
    if (t < cancel->started_at() + connect_ms) break;
    cancel_order_.remove(cancel);
    cancel->time_out(connect_ms);
  }
  // Clients that gave a wrong password hear so only after the delay, which
  // slows down password guessing.
  while (ClientConn* client = auth_failed_.front()) {
    if (t < client->auth_failed_at() + static_cast<uint64_t>(config_.auth_failure_delay.count())) {
      break;
    }
    auth_failed_.remove(client);
    client->report_auth_failure();
  }
  // A probe whose connect hangs (packets dropped) is given up like a server.
  for (auto& [id, entry] : probes_) {
    if (t >= entry.started_at + connect_ms) entry.probe->cancel();
  }
  for (auto& pool : pools_) pool->tick(t);
  if (metrics_ != nullptr) metrics_->tick(t);
  if (!admin_waiting_.empty()) {
    // A poll may finish a command and run the client's next one, which may
    // close other sessions (SHUTDOWN): poll a snapshot, skipping any that
    // left the list meanwhile (none is freed before the next loop turn).
    std::vector<AdminSession*> waiting;
    for (AdminSession* s = admin_waiting_.front(); s != nullptr; s = admin_waiting_.next(s)) {
      waiting.push_back(s);
    }
    for (AdminSession* session : waiting) {
      if (static_cast<AdminLink*>(session)->linked()) session->poll();
    }
  }
  check_drain(t);
  if (stopping_) return;
  // Once a second, buffer blocks unused for that long go back to the system.
  if (++janitor_ticks_ % 10 == 0 && blocks_.trim(kCachedBlocksFloor) > 0) malloc_trim(0);
}

}  // namespace pgmux::proxy
