// A latency histogram in the shape of HdrHistogram: log-linear buckets that
// keep every recorded value (no sampling) to within 1/128 (< 0.8 %) of its
// true size, from 1 microsecond to kMaxValue. Values are plain integers; the
// harness records microseconds.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace pgmux::bench {

class Histogram {
 public:
  // Values above this are counted as this (60 s in microseconds).
  static constexpr uint64_t kMaxValue = 60'000'000;

  void record(uint64_t value);
  // Adds every count of `other` into this one.
  void merge(const Histogram& other);
  void reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }  // Exact, before clamping to kMaxValue.
  double mean() const;                   // Exact (from the running sum); 0 when empty.
  // The value at or below which `percentile` (0..100) of the recorded values
  // lie: the middle of the bucket holding that rank, never above max(). 0 when
  // empty.
  uint64_t percentile(double percentile) const;

  // One point of the cumulative distribution: `fraction` (0..1] of the values
  // are at or below `value`.
  struct Point {
    double fraction;
    uint64_t value;
  };
  // One point for every non-empty bucket, in increasing order.
  std::vector<Point> distribution() const;

  // Bucket arithmetic, exposed for the tests.
  static size_t bucket_of(uint64_t value);
  static uint64_t bucket_low(size_t bucket);   // Smallest value in the bucket.
  static uint64_t bucket_high(size_t bucket);  // Largest value in the bucket.

 private:
  // Values below 2 * kSub have a bucket each; above, every power of two is cut
  // into kSub buckets of equal width.
  static constexpr int kSubBits = 7;
  static constexpr uint64_t kSub = uint64_t{1} << kSubBits;
  static constexpr size_t kBuckets = 2 * kSub + 19 * kSub;  // Enough for 2^27 > kMaxValue.

  std::array<uint64_t, kBuckets> counts_{};
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  long double sum_ = 0;
};

}  // namespace pgmux::bench
