// The stats_period: every period the Proxy rolls each pool's period marks
// (PoolStats::period_start and previous_period_start), which SHOW
// STATS_AVERAGES and SHOW STATS' avg_* columns read, and logs one stats line
// per pool as PgBouncer does. Pure functions over PoolStats; the Proxy's
// janitor decides when.
#pragma once

#include <cstdint>
#include <string>

#include "proxy/stats.h"

namespace pgmux::proxy {

// Ends the current period of `period_us` microseconds: its start becomes the
// previous start, the totals now become the current start.
void roll_period(PoolStats& stats, uint64_t period_us);

// Per-second rates and per-transaction averages over the last whole period
// (PgBouncer's avg_* columns); all zero before the first period ends.
struct PeriodAverages {
  uint64_t xact_count = 0;   // Per second.
  uint64_t query_count = 0;  // Per second.
  uint64_t server_assignment_count = 0;
  uint64_t received = 0;  // Bytes per second.
  uint64_t sent = 0;
  uint64_t xact_time_us = 0;   // Per transaction.
  uint64_t query_time_us = 0;  // Per query.
  uint64_t wait_time_us = 0;   // Per server assignment.
  uint64_t client_parse_count = 0;
  uint64_t server_parse_count = 0;
  uint64_t bind_count = 0;
};
PeriodAverages period_averages(const PoolStats& stats);

// "app: 812 xacts/s, 1624 queries/s, in 90112 B/s, out 401337 B/s, xact 1203 us,
// query 590 us, wait 12 us; clients 40 (3 waiting), servers 15 (12 active)".
struct PoolGauges {
  uint64_t clients = 0;
  uint64_t waiting = 0;
  uint64_t servers = 0;
  uint64_t active = 0;
};
std::string stats_line(const std::string& database, const PoolStats& stats,
                       const PoolGauges& gauges);

}  // namespace pgmux::proxy
