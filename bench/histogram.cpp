#include "bench/histogram.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>

namespace pgmux::bench {

size_t Histogram::bucket_of(uint64_t value) {
  value = std::min(value, kMaxValue);
  if (value < 2 * kSub) return static_cast<size_t>(value);
  // Shift so that the top kSubBits + 1 bits remain: value >> shift is in
  // [kSub, 2 * kSub), and the bucket width 2^shift is at most value / kSub.
  const int shift = std::bit_width(value) - (kSubBits + 1);
  const uint64_t sub = (value >> shift) - kSub;
  const size_t bucket = 2 * kSub + static_cast<size_t>(shift - 1) * kSub + static_cast<size_t>(sub);
  assert(bucket < kBuckets);
  return bucket;
}

uint64_t Histogram::bucket_low(size_t bucket) {
  if (bucket < 2 * kSub) return bucket;
  const size_t rest = bucket - 2 * kSub;
  const int shift = static_cast<int>(rest / kSub) + 1;
  return (kSub + rest % kSub) << shift;
}

uint64_t Histogram::bucket_high(size_t bucket) {
  if (bucket < 2 * kSub) return bucket;
  const int shift = static_cast<int>((bucket - 2 * kSub) / kSub) + 1;
  return bucket_low(bucket) + (uint64_t{1} << shift) - 1;
}

void Histogram::record(uint64_t value) {
  ++counts_[bucket_of(value)];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
  sum_ += static_cast<long double>(value);
}

void Histogram::merge(const Histogram& other) {
  for (size_t i = 0; i < kBuckets; ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::reset() { *this = Histogram(); }

double Histogram::mean() const {
  return count_ == 0 ? 0.0 : static_cast<double>(sum_ / static_cast<long double>(count_));
}

uint64_t Histogram::percentile(double percentile) const {
  if (count_ == 0) return 0;
  percentile = std::clamp(percentile, 0.0, 100.0);
  // The rank of the value asked for, 1-based: p50 of 10 values is the 5th.
  uint64_t rank =
      static_cast<uint64_t>(std::ceil(percentile / 100.0 * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      const uint64_t middle = bucket_low(i) + (bucket_high(i) - bucket_low(i)) / 2;
      return std::clamp(middle, min(), max_);
    }
  }
  return max_;
}

std::vector<Histogram::Point> Histogram::distribution() const {
  std::vector<Point> points;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBuckets && seen < count_; ++i) {
    if (counts_[i] == 0) continue;
    seen += counts_[i];
    const uint64_t value = std::clamp(bucket_high(i), min(), max_);
    points.push_back({static_cast<double>(seen) / static_cast<double>(count_), value});
  }
  return points;
}

}  // namespace pgmux::bench
