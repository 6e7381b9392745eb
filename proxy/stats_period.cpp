#include "proxy/stats_period.h"

#include <spdlog/fmt/fmt.h>

namespace pgmux::proxy {

void roll_period(PoolStats& stats, uint64_t period_us) {
  stats.previous_period_start = stats.period_start;
  stats.period_start = stats.totals;
  stats.period_us = period_us;
}

namespace {

uint64_t per_second(uint64_t count, uint64_t period_us) {
  return period_us == 0 ? 0 : count * 1000000 / period_us;
}

uint64_t per_item(uint64_t total, uint64_t items) { return items == 0 ? 0 : total / items; }

}  // namespace

PeriodAverages period_averages(const PoolStats& stats) {
  PeriodAverages avg;
  if (stats.period_us == 0) return avg;
  const StatsTotals& now = stats.period_start;
  const StatsTotals& then = stats.previous_period_start;
  const uint64_t us = stats.period_us;
  const uint64_t xacts = now.xact_count - then.xact_count;
  const uint64_t queries = now.query_count - then.query_count;
  const uint64_t assignments = now.server_assignment_count - then.server_assignment_count;
  avg.xact_count = per_second(xacts, us);
  avg.query_count = per_second(queries, us);
  avg.server_assignment_count = per_second(assignments, us);
  avg.received = per_second(now.received - then.received, us);
  avg.sent = per_second(now.sent - then.sent, us);
  avg.xact_time_us = per_item(now.xact_time_us - then.xact_time_us, xacts);
  avg.query_time_us = per_item(now.query_time_us - then.query_time_us, queries);
  avg.wait_time_us = per_item(now.wait_time_us - then.wait_time_us, assignments);
  avg.client_parse_count = per_second(now.client_parse_count - then.client_parse_count, us);
  avg.server_parse_count = per_second(now.server_parse_count - then.server_parse_count, us);
  avg.bind_count = per_second(now.bind_count - then.bind_count, us);
  return avg;
}

std::string stats_line(const std::string& database, const PoolStats& stats,
                       const PoolGauges& gauges) {
  const PeriodAverages avg = period_averages(stats);
  return fmt::format(
      "{}: {} xacts/s, {} queries/s, in {} B/s, out {} B/s, xact {} us, query {} us, wait {} us; "
      "clients {} ({} waiting), servers {} ({} active)",
      database, avg.xact_count, avg.query_count, avg.received, avg.sent, avg.xact_time_us,
      avg.query_time_us, avg.wait_time_us, gauges.clients, gauges.waiting, gauges.servers,
      gauges.active);
}

}  // namespace pgmux::proxy
