// A finished run as plain data, and its three renderings: the human
// summary, the --json object and the progress line. The SVG plot is in
// bench/svg.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/errors.h"
#include "bench/histogram.h"

namespace pgmux::bench {

// One progress interval.
struct Interval {
  double t = 0;  // Seconds since the measurement started, at the interval's end.
  uint64_t transactions = 0;
  double tps = 0;
  uint64_t p50_us = 0;
  uint64_t p99_us = 0;
  uint64_t errors = 0;
  int connected = 0;
};

struct Results {
  std::string scenario;
  std::string protocol;  // "simple" or "extended".
  int clients = 0;
  double rate = 0;            // 0: closed loop.
  double duration_s = 0;      // Measured, from the first transaction slot to the stop.
  double connect_s = 0;       // Time the initial ramp of connections took.
  uint64_t transactions = 0;  // Completed without error.
  Histogram latency;          // Microseconds per completed transaction.
  Histogram connect;          // Microseconds per successful handshake.
  ErrorTable errors;          // Failed transactions and failed connects.
  uint64_t connect_failures = 0;
  int connected = 0;  // Connections open when the measurement ended.
  std::vector<Interval> timeline;

  double tps() const { return duration_s > 0 ? static_cast<double>(transactions) / duration_s : 0; }
};

// The end-of-run summary for people.
std::string summary_text(const Results& results);

// One JSON object (no trailing newline). Keys: scenario, clients, duration_s,
// connect_s (the ramp), transactions, tps, errors, capacity_errors, errors_by_kind [{sqlstate,
// message, count, capacity}], connected, connect_failures, latency_us {mean,
// p50, p90, p99, p999, max}, connect_us {p50, p99, max}, timeline [{t, tps,
// p50_us, p99_us, errors, connected}], and protocol, rate.
std::string json_text(const Results& results);

// JSON string literal with quotes, escaping what RFC 8259 requires.
std::string json_string(std::string_view text);

// The live line: "  3.0 s   12345 tps  p50 0.41 ms  p99 1.20 ms  0 errors  100/100 connected".
std::string progress_line(const Interval& interval, int clients);

// "0.41 ms", "12 us", "1.20 s": a duration in microseconds, for people.
std::string format_us(double us);

}  // namespace pgmux::bench
