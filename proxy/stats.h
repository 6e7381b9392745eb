// What pgmux counts, per pool: the figures behind the admin console's SHOW
// STATS / SHOW POOLS, /metrics and the periodic stats line. Plain counters
// and fixed-bucket histograms, updated on the loop's thread by the Link (per
// query and transaction), the Pool (wait, assignment, refusals) and the
// ServerConn (connect and login); read by the same thread. Updating one is
// an add or two: no allocation, no lock, no clock read beyond the ones
// named below.
#pragma once

#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>

namespace pgmux::proxy {

// Microseconds on a monotonic clock (uv_hrtime()), for durations.
inline uint64_t now_us() { return uv_hrtime() / 1000; }

// A Prometheus-style histogram of durations, with fixed buckets from 100 µs
// to 30 s. counts[i] is the number of observations <= kBoundsUs[i] and above
// the previous bound (not cumulative); the last count is above 30 s.
struct Histogram {
  static constexpr std::array<uint64_t, 17> kBoundsUs = {
      100,    250,    500,    1000,    2500,    5000,    10000,    25000,   50000,
      100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 30000000};
  std::array<uint64_t, kBoundsUs.size() + 1> counts{};
  uint64_t sum_us = 0;
  uint64_t count = 0;

  void observe(uint64_t us) {
    size_t i = 0;
    while (i < kBoundsUs.size() && us > kBoundsUs[i]) ++i;
    ++counts[i];
    sum_us += us;
    ++count;
  }
};

// PgBouncer's SHOW STATS totals (its names, its units: bytes and µs).
struct StatsTotals {
  uint64_t server_assignment_count = 0;  // Servers handed to clients.
  uint64_t xact_count = 0;               // Transactions (ReadyForQuery 'I').
  uint64_t query_count = 0;              // Requests answered (each ReadyForQuery).
  uint64_t received = 0;                 // Bytes from clients to servers.
  uint64_t sent = 0;                     // Bytes from servers to clients.
  uint64_t xact_time_us = 0;
  uint64_t query_time_us = 0;
  uint64_t wait_time_us = 0;        // Time clients waited for a server.
  uint64_t client_parse_count = 0;  // Parse messages from clients.
  uint64_t server_parse_count = 0;  // Parse messages sent to servers.
  uint64_t bind_count = 0;          // Bind messages.
};

// Why a server's connect or login failed, as /metrics labels it.
enum class ConnectFailure : uint8_t {
  kTooManyClients,  // 53300 from PostgreSQL.
  kSupavisor,       // Supavisor's EMAXCONNSESSION / MaxClientsInSessionMode.
  kUnavailable,     // 57P03: starting up or shutting down.
  kUnreachable,     // Resolve, connect, TLS or the connection failed; timed out.
  kAuth,            // The upstream refused the login (password, database, ...).
  kCount,
};

struct PoolStats {
  StatsTotals totals;
  // The totals at the start of the current stats_period and at the start of
  // the previous one: SHOW STATS' averages and the stats line are the
  // difference over the last whole period.
  StatsTotals period_start;
  StatsTotals previous_period_start;
  uint64_t period_us = 0;  // Length of the last whole period; 0 before the first.

  uint64_t server_connects = 0;  // Logins that succeeded.
  std::array<uint64_t, static_cast<size_t>(ConnectFailure::kCount)> connect_failures{};
  uint64_t retries = 0;         // Connect attempts made while backing off from a failure.
  uint64_t queue_timeouts = 0;  // Requests that waited query_wait_timeout (53300 to the client).

  Histogram queue_wait;    // From joining the wait queue to getting a server (0 when one was idle).
  Histogram xact_time;     // Transactions, first request to ReadyForQuery 'I'.
  Histogram connect_time;  // A server's connect and login.
};

}  // namespace pgmux::proxy
