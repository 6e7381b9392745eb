// /metrics, /healthz and /readyz for one Proxy: its HttpServer on the
// Proxy's loop, and the snapshot of the Proxy's state each scrape renders
// (proxy/metrics.h). Owned by the Proxy; runs only on the loop's thread, so
// it reads the pools, upstreams and stats directly, with no lock.
//
//   /healthz  200 "ok": the loop answered.
//   /readyz   200 "ready", or 503 and a one-line reason: not listening,
//             draining, paused, or an upstream not reached (metrics.h's
//             rule). A /readyz that finds an upstream with no server logged
//             in and no contact for half the reach window probes it (a bare
//             TCP connect, as after an outage), so an idle pgmux whose
//             servers all timed out stays ready while the upstream is up.
//             The first janitor tick does the same, so the first /readyz
//             after start need not be 503.
//   /metrics  the Prometheus text format.
#pragma once

#include <cstdint>
#include <string_view>

#include "protocol/result.h"
#include "proxy/http.h"
#include "proxy/metrics.h"

namespace pgmux::proxy {

class Proxy;

class MetricsService final : private HttpHandler {
 public:
  explicit MetricsService(Proxy& proxy);
  MetricsService(const MetricsService&) = delete;
  MetricsService& operator=(const MetricsService&) = delete;

  // Binds metrics_listen (with SO_REUSEPORT when so_reuseport is set).
  protocol::Status start();
  uint16_t port() const { return server_.port(); }
  // The janitor's tick: scrape deadlines; on the first tick, probes the
  // upstreams no login is reaching, so that the first /readyz can be 200.
  void tick(uint64_t now);
  void stop() { server_.close(); }

  MetricsSnapshot snapshot() const;

 private:
  HttpReply handle_get(std::string_view path) override;
  HttpReply readiness();
  // Probes upstreams that /readyz would soon find unreached (see above).
  void refresh_reach();

  Proxy& proxy_;
  HttpServer server_;
  bool primed_ = false;
};

}  // namespace pgmux::proxy
