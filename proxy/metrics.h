// /metrics and /readyz as pure functions over a plain snapshot of the
// Proxy's state: the Prometheus text exposition format 0.0.4, and the
// readiness rule. MetricsService (proxy/metrics_service.h) takes the
// snapshot on the loop's thread; nothing here touches a socket or the Proxy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxy/stats.h"

namespace pgmux::proxy {

struct PoolSnapshot {
  std::string database;
  // Logged-in clients: with a server (active), queued for one (waiting),
  // neither (idle).
  uint64_t clients_active = 0;
  uint64_t clients_waiting = 0;
  uint64_t clients_idle = 0;
  uint64_t servers_active = 0;
  uint64_t servers_idle = 0;
  uint64_t servers_opening = 0;
  uint64_t servers_checking = 0;
  PoolStats stats;
};

struct UpstreamSnapshot {
  std::string endpoint;  // host:port
  uint32_t cap = 0;
  uint32_t pinned = 0;
  uint32_t logged_in = 0;     // Servers past their login now.
  bool failing = false;       // Backing off after a failed connect or login.
  uint64_t last_reached = 0;  // uv_now() ms of the last contact; 0: never.
  std::string last_error;
  // Sharing the budget (proxy/upstream.h).
  uint32_t limit = 0;  // The cap pgmux holds itself to now.
  uint32_t open = 0;   // Servers open or opening.
  bool contended = false;
  uint64_t limit_decreases = 0;
  uint64_t yields = 0;
  uint64_t surveys = 0;
};

// Read from /proc/self; `known` is false when /proc could not be read.
struct ProcessSnapshot {
  bool known = false;
  uint64_t resident_bytes = 0;
  uint64_t virtual_bytes = 0;
  double cpu_seconds = 0;
  uint64_t open_fds = 0;
  double start_time_seconds = 0;  // Since the Unix epoch.
};

struct MetricsSnapshot {
  std::string version;
  uint64_t now = 0;  // uv_now() ms, for the upstreams' reach.
  std::vector<PoolSnapshot> pools;
  std::vector<UpstreamSnapshot> upstreams;
  ProcessSnapshot process;
};

// The whole /metrics body. Every family has # HELP and # TYPE and all its
// samples together; histogram buckets are cumulative, `le` and sums in
// seconds.
std::string render_metrics(const MetricsSnapshot& snapshot);

// Escapes a label value (backslash, double quote, newline) for the text
// format.
std::string escape_label_value(const std::string& value);

// The readiness rule's upstream half: an upstream is reached when a server
// of it is logged in now, or pgmux connected to it (a login, a passed idle
// check, or a probe) within kReachWindowMs.
inline constexpr uint64_t kReachWindowMs = 30000;
bool reached(const UpstreamSnapshot& upstream, uint64_t now);

struct ReadyState {
  bool listening = false;
  bool draining = false;
  bool paused = false;
};
// Empty when ready; otherwise a one-line reason for the 503. A saturated pool
// (every server busy, clients waiting) is ready.
std::string not_ready_reason(const ReadyState& state,
                             const std::vector<UpstreamSnapshot>& upstreams, uint64_t now);

ProcessSnapshot read_process_snapshot();

}  // namespace pgmux::proxy
