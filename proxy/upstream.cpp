#include "proxy/upstream.h"

#include <algorithm>

namespace pgmux::proxy {

Upstream::Upstream(std::string endpoint, uint32_t cap, const config::Config& config)
    : endpoint_(std::move(endpoint)),
      cap_(cap),
      retry_initial_ms_(static_cast<uint64_t>(config.server_retry_initial.count())),
      retry_max_ms_(static_cast<uint64_t>(config.server_retry_max.count())),
      probe_interval_ms_(static_cast<uint64_t>(config.server_probe_interval.count())) {}

void Upstream::configure(uint32_t cap, const config::Config& config) {
  cap_ = cap;
  retry_initial_ms_ = static_cast<uint64_t>(config.server_retry_initial.count());
  retry_max_ms_ = static_cast<uint64_t>(config.server_retry_max.count());
  probe_interval_ms_ = static_cast<uint64_t>(config.server_probe_interval.count());
}

uint64_t Upstream::on_failure(TimeMs now, std::mt19937_64& rng, Outage outage) {
  ++failures_;
  outage_ = outage;
  uint64_t delay = retry_initial_ms_;
  for (uint32_t i = 1; i < failures_ && delay < retry_max_ms_; ++i) delay *= 2;
  delay = std::min(delay, retry_max_ms_);
  // +-25 % jitter, so many pgmux instances do not retry in lockstep.
  std::uniform_real_distribution<double> jitter(0.75, 1.25);
  delay = static_cast<uint64_t>(static_cast<double>(delay) * jitter(rng));
  retry_at_ = now + delay;
  return delay;
}

bool Upstream::wants_probe(TimeMs now) const {
  if (probe_interval_ms_ == 0 || outage_ != Outage::kDown || failures_ == 0) return false;
  if (now >= retry_at_ || probe_in_flight_ || opening_ > 0) return false;
  return now >= next_probe_at_;
}

bool Upstream::on_probe_done(bool connected, TimeMs now) {
  probe_in_flight_ = false;
  if (connected) last_reached_ = now;
  if (!connected || failures_ == 0 || now >= retry_at_) return false;
  retry_at_ = now;
  return true;
}

}  // namespace pgmux::proxy
