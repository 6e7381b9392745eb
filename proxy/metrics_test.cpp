#include "proxy/metrics.h"

#include <doctest/doctest.h>

#include <sstream>
#include <string>

namespace pgmux::proxy {
namespace {

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

MetricsSnapshot one_pool() {
  MetricsSnapshot s;
  s.version = "9.9";
  PoolSnapshot p;
  p.database = "app";
  p.clients_active = 2;
  p.clients_waiting = 3;
  p.clients_idle = 4;
  p.servers_idle = 1;
  p.stats.totals.xact_count = 17;
  p.stats.connect_failures[static_cast<size_t>(ConnectFailure::kUnreachable)] = 5;
  p.stats.queue_wait.observe(50);        // <= 100 µs
  p.stats.queue_wait.observe(300);       // <= 500 µs
  p.stats.queue_wait.observe(40000000);  // above 30 s
  s.pools.push_back(p);
  s.upstreams.push_back(UpstreamSnapshot{"db:5432", 10, 1, 3, false, 0, ""});
  s.upstreams.back().limit = 7;
  s.upstreams.back().open = 4;
  s.upstreams.back().contended = true;
  s.upstreams.back().limit_decreases = 2;
  s.upstreams.back().yields = 1;
  s.upstreams.back().surveys = 9;
  return s;
}

TEST_CASE("metrics: histogram buckets are cumulative, le and sum in seconds") {
  const std::string text = render_metrics(one_pool());
  const std::string b = "pgmux_queue_wait_seconds_bucket{database=\"app\",le=";
  CHECK(has_line(text, "# TYPE pgmux_queue_wait_seconds histogram"));
  CHECK(has_line(text, b + "\"0.0001\"} 1"));
  CHECK(has_line(text, b + "\"0.00025\"} 1"));
  CHECK(has_line(text, b + "\"0.0005\"} 2"));
  CHECK(has_line(text, b + "\"2.5\"} 2"));
  CHECK(has_line(text, b + "\"30\"} 2"));
  CHECK(has_line(text, b + "\"+Inf\"} 3"));
  CHECK(has_line(text, "pgmux_queue_wait_seconds_sum{database=\"app\"} 40.00035"));
  CHECK(has_line(text, "pgmux_queue_wait_seconds_count{database=\"app\"} 3"));
  CHECK(
      has_line(text, "pgmux_transaction_duration_seconds_bucket{database=\"app\",le=\"+Inf\"} 0"));
}

TEST_CASE("metrics: gauges, counters, and every family has HELP and TYPE") {
  const std::string text = render_metrics(one_pool());
  CHECK(has_line(text, "pgmux_up 1"));
  CHECK(has_line(text, "pgmux_build_info{version=\"9.9\"} 1"));
  CHECK(has_line(text, "pgmux_clients{database=\"app\",state=\"waiting\"} 3"));
  CHECK(has_line(text, "pgmux_clients{database=\"app\",state=\"idle\"} 4"));
  CHECK(has_line(text, "pgmux_servers{database=\"app\",state=\"idle\"} 1"));
  CHECK(has_line(text, "pgmux_transactions_total{database=\"app\"} 17"));
  CHECK(has_line(text,
                 "pgmux_server_connect_failures_total{database=\"app\",reason=\"unreachable\"} 5"));
  CHECK(has_line(text, "pgmux_server_connect_failures_total{database=\"app\",reason=\"auth\"} 0"));
  CHECK(has_line(text, "pgmux_server_cap{upstream=\"db:5432\"} 10"));
  CHECK(has_line(text, "pgmux_servers_pinned{upstream=\"db:5432\"} 1"));
  CHECK(has_line(text, "pgmux_upstream_reached{upstream=\"db:5432\"} 1"));
  CHECK(has_line(text, "pgmux_server_limit{upstream=\"db:5432\"} 7"));
  CHECK(has_line(text, "pgmux_upstream_servers{upstream=\"db:5432\"} 4"));
  CHECK(has_line(text, "pgmux_budget_contended{upstream=\"db:5432\"} 1"));
  CHECK(has_line(text, "pgmux_budget_limit_decreases_total{upstream=\"db:5432\"} 2"));
  CHECK(has_line(text, "pgmux_budget_yields_total{upstream=\"db:5432\"} 1"));
  CHECK(has_line(text, "pgmux_budget_surveys_total{upstream=\"db:5432\"} 9"));
  size_t help = 0;
  size_t type = 0;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    help += l.rfind("# HELP ", 0) == 0 ? 1 : 0;
    type += l.rfind("# TYPE ", 0) == 0 ? 1 : 0;
  }
  CHECK(help == type);
  CHECK(help == 25);  // Without the process figures (known is false).
  CHECK(text.back() == '\n');
}

TEST_CASE("metrics: label values are escaped") {
  CHECK(escape_label_value("plain") == "plain");
  CHECK(escape_label_value("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
  MetricsSnapshot s = one_pool();
  s.pools[0].database = "we\"ird\\db\n";
  const std::string text = render_metrics(s);
  CHECK(has_line(text, "pgmux_transactions_total{database=\"we\\\"ird\\\\db\\n\"} 17"));
}

TEST_CASE("metrics: the process figures are read from /proc") {
  const ProcessSnapshot p = read_process_snapshot();
  REQUIRE(p.known);
  CHECK(p.resident_bytes > 0);
  CHECK(p.open_fds >= 3);
  CHECK(p.start_time_seconds > 1e9);
}

TEST_CASE("readiness: listening, not draining or paused, every upstream reached") {
  UpstreamSnapshot up{"db:5432", 10, 0, 0, false, 0, ""};
  const ReadyState ok{true, false, false};
  CHECK(not_ready_reason(ok, {up}, 1000) == "upstream db:5432 not reached yet");
  up.last_error = "connection refused";
  CHECK(not_ready_reason(ok, {up}, 1000) == "upstream db:5432 not reached yet: connection refused");
  up.last_error.clear();
  up.last_reached = 1000;
  CHECK(not_ready_reason(ok, {up}, 1000 + kReachWindowMs).empty());
  CHECK(not_ready_reason(ok, {up}, 2000 + kReachWindowMs) ==
        "upstream db:5432 not reached for 31 s");
  up.logged_in = 1;  // A server logged in now is contact enough, however old.
  CHECK(not_ready_reason(ok, {up}, 1000000).empty());
  CHECK(not_ready_reason(ReadyState{true, true, false}, {up}, 0) == "draining: shutting down");
  CHECK(not_ready_reason(ReadyState{true, false, true}, {up}, 0) == "paused");
  CHECK(not_ready_reason(ReadyState{false, false, false}, {up}, 0) == "not listening");
}

}  // namespace
}  // namespace pgmux::proxy
