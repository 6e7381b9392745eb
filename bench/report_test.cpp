#include "bench/report.h"

#include <doctest/doctest.h>

#include <string>

#include "bench/errors.h"
#include "bench/svg.h"

namespace pgmux::bench {
namespace {

Results sample() {
  Results r;
  r.scenario = "select";
  r.protocol = "simple";
  r.clients = 100;
  r.duration_s = 10;
  r.transactions = 1000;
  for (uint64_t v = 1; v <= 1000; ++v) r.latency.record(v * 10);
  r.connect.record(1500);
  r.connected = 100;
  r.errors.add("53300", "sorry, too many clients already");
  r.errors.add("53300", "sorry, too many clients already");
  r.errors.add("", "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused");
  r.errors.add("42P01", "relation \"x\" does not exist \"quoted\" \\ back");
  r.connect_failures = 1;
  r.timeline.push_back({1.0, 100, 100.0, 5000, 9900, 3, 100});
  r.timeline.push_back({2.0, 120, 120.0, 4000, 8000, 0, 100});
  return r;
}

}  // namespace

TEST_CASE("capacity errors: by SQLSTATE and by message") {
  CHECK(is_capacity_error("53300", "anything"));
  CHECK(is_capacity_error("", "FATAL:  sorry, too many clients already"));
  CHECK(is_capacity_error("XX000", "MaxClientsInSessionMode: max clients reached"));
  CHECK(is_capacity_error("", "remaining connection slots are reserved for superusers"));
  CHECK_FALSE(is_capacity_error("42P01", "relation does not exist"));
}

TEST_CASE("message prefix drops libpq's server prefix and severity, 60 characters") {
  CHECK(message_prefix("connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  sorry, "
                       "too many clients already\n") == "sorry, too many clients already");
  CHECK(message_prefix("ERROR:  boom\n  detail") == "boom detail");
  CHECK(message_prefix(std::string(100, 'x')).size() == kMessagePrefix);
  // Never half a UTF-8 character.
  std::string accents;
  for (int i = 0; i < 40; ++i) accents += "\xc3\xa9";  // é
  const std::string p = message_prefix(accents);
  CHECK(p.size() == kMessagePrefix);
  CHECK(message_prefix("x" + accents).size() == kMessagePrefix - 1);
}

TEST_CASE("error table groups and counts") {
  const Results r = sample();
  CHECK(r.errors.total() == 4);
  CHECK(r.errors.capacity() == 2);
  const auto kinds = r.errors.kinds();
  REQUIRE(kinds.size() == 3);
  CHECK(kinds[0].count == 2);
  CHECK(kinds[0].sqlstate == "53300");
  CHECK(kinds[0].capacity);
}

TEST_CASE("json has the agreed keys and escapes strings") {
  const std::string j = json_text(sample());
  CHECK(j.front() == '{');
  CHECK(j.back() == '}');
  for (const char* key :
       {"\"scenario\":\"select\"", "\"clients\":100", "\"duration_s\":10.000", "\"connect_s\":",
        "\"transactions\":1000", "\"tps\":100.0", "\"errors\":4", "\"capacity_errors\":2",
        "\"errors_by_kind\":[{\"sqlstate\":\"53300\",\"message\":\"sorry, too many clients "
        "already\",\"count\":2",
        "\"connected\":100", "\"connect_failures\":1", "\"latency_us\":{\"mean\":5005.0,",
        "\"p50\":", "\"p90\":", "\"p99\":", "\"p999\":", "\"max\":10000}", "\"connect_us\":{",
        "\"timeline\":[{\"t\":1.000,\"tps\":100.0,\"p50_us\":5000,\"p99_us\":9900,\"errors\":3"}) {
    CHECK_MESSAGE(j.find(key) != std::string::npos, key);
  }
  CHECK(j.find(R"(relation \"x\" does not exist \"quoted\" \\ back)") != std::string::npos);
  CHECK(json_string("a\x01\n") == "\"a\\u0001\\n\"");
}

TEST_CASE("summary names the numbers and calls out capacity errors") {
  const std::string s = summary_text(sample());
  CHECK(s.find("scenario:            select (simple protocol)") != std::string::npos);
  CHECK(s.find("tps:                 100.0") != std::string::npos);
  CHECK(s.find("p99.9") != std::string::npos);
  CHECK(s.find("capacity errors:     2") != std::string::npos);
  CHECK(s.find("[capacity]") != std::string::npos);
  CHECK(s.find("Connection refused") != std::string::npos);
}

TEST_CASE("progress line and durations for people") {
  CHECK(format_us(12) == "12 us");
  CHECK(format_us(1500) == "1.50 ms");
  CHECK(format_us(2'500'000) == "2.50 s");
  const std::string line = progress_line({3.0, 10, 12345, 410, 1200, 0, 100}, 100);
  CHECK(line.find("12345 tps") != std::string::npos);
  CHECK(line.find("100/100 connected") != std::string::npos);
}

TEST_CASE("nice ticks") {
  CHECK(nice_ticks(0, 10, 5) == std::vector<double>{0, 2, 4, 6, 8, 10});
  const auto small = nice_ticks(0, 0.9, 4);
  REQUIRE(small.size() == 3);  // A step of 0.5: the smallest round step >= 0.9 / 4.
  CHECK(small[1] == doctest::Approx(0.5));
  CHECK(small[2] == doctest::Approx(1.0));
  const auto t = nice_ticks(0, 12345, 5);
  CHECK(t.front() == 0);
  CHECK(t.back() >= 12345);
  CHECK(t.size() <= 8);
}

TEST_CASE("svg is one self-contained document with three panels") {
  Results r = sample();
  r.scenario = "a<b & \"c\"";
  const std::string svg = svg_plot(r);
  CHECK(svg.starts_with("<?xml"));
  CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\"") != std::string::npos);
  CHECK(svg.ends_with("</svg>\n"));
  CHECK(svg.find("Throughput") != std::string::npos);
  CHECK(svg.find("Latency over time") != std::string::npos);
  CHECK(svg.find("Latency distribution") != std::string::npos);
  CHECK(svg.find("a&lt;b &amp; &quot;c&quot;") != std::string::npos);
  CHECK(svg.find("<polyline") != std::string::npos);
  CHECK(svg.find("href") == std::string::npos);
  CHECK(svg.find("nan") == std::string::npos);
  CHECK(svg.find("inf") == std::string::npos);

  const std::string empty = svg_plot(Results{});
  CHECK(empty.find("no transactions") != std::string::npos);
  CHECK(empty.find("nan") == std::string::npos);
}

}  // namespace pgmux::bench
