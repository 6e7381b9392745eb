#include "bench/histogram.h"

#include <doctest/doctest.h>

#include <cstdint>

namespace pgmux::bench {

TEST_CASE("histogram buckets hold exactly the values that map to them") {
  for (uint64_t v : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{256}, uint64_t{257},
                     uint64_t{1000}, uint64_t{65535}, uint64_t{1'000'000}, Histogram::kMaxValue}) {
    const size_t b = Histogram::bucket_of(v);
    CHECK(Histogram::bucket_low(b) <= v);
    CHECK(v <= Histogram::bucket_high(b));
  }
  // Buckets tile the range without gaps or overlaps.
  for (size_t b = 1; b < Histogram::bucket_of(Histogram::kMaxValue); ++b) {
    CHECK(Histogram::bucket_low(b) == Histogram::bucket_high(b - 1) + 1);
  }
}

TEST_CASE("histogram precision is better than 1% from 1 us to 60 s") {
  for (uint64_t v = 1; v <= Histogram::kMaxValue; v = v * 3 / 2 + 1) {
    const size_t b = Histogram::bucket_of(v);
    const double width = static_cast<double>(Histogram::bucket_high(b) - Histogram::bucket_low(b));
    CHECK(width <= 0.01 * static_cast<double>(v));
  }
}

TEST_CASE("histogram percentiles of 1..10000") {
  Histogram h;
  for (uint64_t v = 1; v <= 10000; ++v) h.record(v);
  CHECK(h.count() == 10000);
  CHECK(h.min() == 1);
  CHECK(h.max() == 10000);
  CHECK(h.mean() == doctest::Approx(5000.5));
  CHECK(h.percentile(50) == doctest::Approx(5000).epsilon(0.01));
  CHECK(h.percentile(90) == doctest::Approx(9000).epsilon(0.01));
  CHECK(h.percentile(99) == doctest::Approx(9900).epsilon(0.01));
  CHECK(h.percentile(99.9) == doctest::Approx(9990).epsilon(0.01));
  CHECK(h.percentile(100) == 10000);
  CHECK(h.percentile(0) == 1);
}

TEST_CASE("histogram small values are exact and a single value is every percentile") {
  Histogram h;
  h.record(42);
  CHECK(h.percentile(1) == 42);
  CHECK(h.percentile(99.9) == 42);
  h.record(100);
  CHECK(h.percentile(50) == 42);
  CHECK(h.percentile(51) == 100);
}

TEST_CASE("histogram clamps huge values but keeps the exact max") {
  Histogram h;
  h.record(Histogram::kMaxValue * 10);
  CHECK(h.max() == Histogram::kMaxValue * 10);
  CHECK(h.percentile(50) <= Histogram::kMaxValue * 10);
  CHECK(h.percentile(50) >= Histogram::kMaxValue * 99 / 100);
}

TEST_CASE("histogram merge and reset; empty histogram reads as zeros") {
  Histogram a;
  Histogram b;
  for (uint64_t v = 1; v <= 100; ++v) a.record(v);
  for (uint64_t v = 101; v <= 200; ++v) b.record(v);
  a.merge(b);
  CHECK(a.count() == 200);
  CHECK(a.min() == 1);
  CHECK(a.max() == 200);
  CHECK(a.percentile(50) == 100);
  a.reset();
  CHECK(a.count() == 0);
  CHECK(a.min() == 0);
  CHECK(a.max() == 0);
  CHECK(a.mean() == 0);
  CHECK(a.percentile(99) == 0);
  CHECK(a.distribution().empty());
}

TEST_CASE("histogram distribution rises to 1") {
  Histogram h;
  for (uint64_t v : {10, 10, 20, 5000, 70000}) h.record(v);
  const auto points = h.distribution();
  REQUIRE(points.size() == 4);
  CHECK(points[0].value == 10);
  CHECK(points[0].fraction == doctest::Approx(0.4));
  CHECK(points.back().fraction == doctest::Approx(1.0));
  CHECK(points.back().value == 70000);
  for (size_t i = 1; i < points.size(); ++i) CHECK(points[i].value > points[i - 1].value);
}

}  // namespace pgmux::bench
