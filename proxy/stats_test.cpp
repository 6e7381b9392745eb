// Histogram buckets and the stats_period averages, without sockets.
#include "proxy/stats.h"

#include <doctest/doctest.h>

#include "proxy/stats_period.h"

namespace pgmux::proxy {

TEST_CASE("Histogram: an observation lands in the first bucket whose bound it does not exceed") {
  Histogram h;
  h.observe(0);
  h.observe(100);       // On the bound: <= 100 µs.
  h.observe(101);       // Next bucket (250 µs).
  h.observe(30000000);  // 30 s: the last finite bucket.
  h.observe(30000001);  // Above every bound.
  CHECK(h.counts[0] == 2);
  CHECK(h.counts[1] == 1);
  CHECK(h.counts[Histogram::kBoundsUs.size() - 1] == 1);
  CHECK(h.counts[Histogram::kBoundsUs.size()] == 1);
  CHECK(h.count == 5);
  CHECK(h.sum_us == 0 + 100 + 101 + 30000000 + 30000001);
}

TEST_CASE("period averages: rates over the last whole period, zero before the first") {
  PoolStats stats;
  CHECK(period_averages(stats).xact_count == 0);
  stats.totals.xact_count = 100;
  stats.totals.xact_time_us = 100 * 2000;
  stats.totals.query_count = 300;
  stats.totals.received = 4000;
  roll_period(stats, 2000000);  // First period: 2 s.
  PeriodAverages avg = period_averages(stats);
  CHECK(avg.xact_count == 50);
  CHECK(avg.query_count == 150);
  CHECK(avg.received == 2000);
  CHECK(avg.xact_time_us == 2000);
  // The next period counts only what happened in it.
  stats.totals.xact_count = 110;
  stats.totals.xact_time_us += 10 * 500;
  stats.totals.query_count = 310;
  roll_period(stats, 1000000);
  avg = period_averages(stats);
  CHECK(avg.xact_count == 10);
  CHECK(avg.query_count == 10);
  CHECK(avg.received == 0);
  CHECK(avg.xact_time_us == 500);
  CHECK(avg.wait_time_us == 0);  // No assignment: no division by zero.
}

TEST_CASE("stats line: names the database and every figure") {
  PoolStats stats;
  stats.totals.xact_count = 20;
  stats.totals.query_count = 40;
  roll_period(stats, 10000000);
  const std::string line = stats_line("app", stats, PoolGauges{7, 2, 5, 3});
  CHECK(line ==
        "app: 2 xacts/s, 4 queries/s, in 0 B/s, out 0 B/s, xact 0 us, query 0 us, wait 0 us; "
        "clients 7 (2 waiting), servers 5 (3 active)");
}

}  // namespace pgmux::proxy
