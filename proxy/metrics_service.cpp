#include "proxy/metrics_service.h"

#include <spdlog/spdlog.h>

#include <string>

#include "proxy/listen_socket.h"
#include "proxy/log.h"
#include "proxy/proxy.h"

namespace pgmux::proxy {

namespace {

constexpr const char* kVersion = "0.1.0";
constexpr const char* kMetricsType = "text/plain; version=0.0.4; charset=utf-8";

// PAUSE (any pool) makes pgmux not ready.
bool paused(const Proxy& proxy) { return proxy.paused(); }

UpstreamSnapshot snapshot_of(const Upstream& up, TimeMs now) {
  UpstreamSnapshot out{up.endpoint(),     up.cap(),          up.pinned(),    up.logged_in(),
                       up.failures() > 0, up.last_reached(), up.last_error()};
  out.limit = up.limit();
  out.open = up.open();
  out.contended = up.contended(now);
  out.limit_decreases = up.decreases();
  out.yields = up.yields();
  out.surveys = up.surveys();
  return out;
}

}  // namespace

MetricsService::MetricsService(Proxy& proxy)
    : proxy_(proxy), server_(proxy.loop(), *this, HttpServer::Limits{}) {}

protocol::Status MetricsService::start() {
  const config::Config& config = proxy_.config();
  sockaddr_storage address{};
  if (!parse_ip_address(config.metrics_host, config.metrics_port, address)) {
    return protocol::Error{"",
                           "metrics_listen: \"" + config.metrics_host + "\" is not an IP address"};
  }
  const int rc = server_.listen(reinterpret_cast<const sockaddr*>(&address), config.so_reuseport);
  if (rc != 0) {
    return protocol::Error{"", "cannot listen for metrics on " + config.metrics_host + ":" +
                                   std::to_string(config.metrics_port) + ": " + uv_strerror(rc)};
  }
  spdlog::info("metrics on http://{}:{}/metrics (and /healthz, /readyz)", config.metrics_host,
               server_.port());
  return protocol::Ok{};
}

MetricsSnapshot MetricsService::snapshot() const {
  MetricsSnapshot s;
  s.version = kVersion;
  s.now = proxy_.now();
  s.pools.reserve(proxy_.pools().size());
  for (const auto& pool : proxy_.pools()) {
    PoolSnapshot p;
    p.database = pool->name();
    p.clients_active = pool->active_count();
    p.clients_waiting = pool->waiting_count();
    const uint64_t busy = p.clients_active + p.clients_waiting;
    p.clients_idle = pool->client_count() > busy ? pool->client_count() - busy : 0;
    p.servers_active = pool->active_count();
    p.servers_idle = pool->idle_count();
    p.servers_opening = pool->opening_count();
    p.servers_checking = pool->checking_count();
    p.stats = pool->stats();
    s.pools.push_back(std::move(p));
  }
  for (const auto& up : proxy_.upstreams()) s.upstreams.push_back(snapshot_of(*up, proxy_.now()));
  s.process = read_process_snapshot();
  return s;
}

void MetricsService::tick(uint64_t now) {
  server_.tick(now);
  if (primed_) return;
  // After Proxy::start's warm-up began: an upstream with logins opening is
  // being reached already and is not probed.
  primed_ = true;
  refresh_reach();
}

HttpReply MetricsService::handle_get(std::string_view path) {
  if (path == "/metrics") return HttpReply{200, kMetricsType, render_metrics(snapshot())};
  if (path == "/healthz") return HttpReply{200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/readyz") return readiness();
  return HttpReply{404, "text/plain; charset=utf-8", "not found\n"};
}

HttpReply MetricsService::readiness() {
  refresh_reach();
  std::vector<UpstreamSnapshot> upstreams;
  for (const auto& up : proxy_.upstreams()) upstreams.push_back(snapshot_of(*up, proxy_.now()));
  const ReadyState state{!proxy_.stopping(), proxy_.draining(), paused(proxy_)};
  const std::string reason = not_ready_reason(state, upstreams, proxy_.now());
  if (reason.empty()) return HttpReply{200, "text/plain; charset=utf-8", "ready\n"};
  return HttpReply{503, "text/plain; charset=utf-8", reason + "\n"};
}

void MetricsService::refresh_reach() {
  const TimeMs now = proxy_.now();
  for (const auto& up : proxy_.upstreams()) {
    // A failing upstream is already retried (and probed while down); a probe
    // here would end a backoff that only a login may end.
    if (up->logged_in() > 0 || up->failures() > 0 || up->opening() > 0 || !up->probes() ||
        up->probe_in_flight() || up->pools().empty()) {
      continue;
    }
    if (up->last_reached() != 0 && now < up->last_reached() + kReachWindowMs / 2) continue;
    up->on_probe_started(now);
    spdlog::debug("readyz: probing {}", up->endpoint());
    proxy_.probe(*up->pools().front());
  }
}

}  // namespace pgmux::proxy
