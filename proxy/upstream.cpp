#include "proxy/upstream.h"

#include <algorithm>

namespace pgmux::proxy {

Upstream::Upstream(std::string endpoint, uint32_t cap, const config::Config& config)
    : endpoint_(std::move(endpoint)),
      cap_(cap),
      retry_initial_ms_(static_cast<uint64_t>(config.server_retry_initial.count())),
      retry_max_ms_(static_cast<uint64_t>(config.server_retry_max.count())),
      probe_interval_ms_(static_cast<uint64_t>(config.server_probe_interval.count())),
      adaptive_(config.budget_sharing == config::BudgetSharing::kAdaptive),
      limit_(static_cast<double>(cap)),
      survey_interval_ms_(static_cast<uint64_t>(config.budget_survey_interval.count())) {}

void Upstream::configure(uint32_t cap, const config::Config& config) {
  const bool adaptive = config.budget_sharing == config::BudgetSharing::kAdaptive;
  // A new cap, or sharing turned on or off, starts the limit afresh.
  if (cap != cap_ || adaptive != adaptive_) limit_ = static_cast<double>(cap);
  cap_ = cap;
  adaptive_ = adaptive;
  survey_interval_ms_ = static_cast<uint64_t>(config.budget_survey_interval.count());
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

uint64_t Upstream::on_refused(TimeMs now, std::mt19937_64& rng) {
  ++refusals_;
  const uint32_t held = logged_in();
  if (!adaptive_ || held == 0) {
    // Nothing held: back off as from any full upstream (one login at a
    // time), but when sharing, never longer than kRefusedRetryMaxMs: the
    // room this instance waits for is being given back within seconds.
    const uint64_t saved_max = retry_max_ms_;
    if (adaptive_) retry_max_ms_ = std::min(retry_max_ms_, kRefusedRetryMaxMs);
    const uint64_t delay = on_failure(now, rng, Outage::kFull);
    retry_max_ms_ = saved_max;
    if (adaptive_) {
      mark_contended(now);
      no_raise_until_ = now + kRaiseAfterRefusalMs;
      // Logins still in flight may get in; the refused one is in opening_.
      limit_ = std::max(1.0, static_cast<double>(opening_) - 1.0);
    }
    return delay;
  }
  mark_contended(now);
  no_raise_until_ = now + kRaiseAfterRefusalMs;
  // The budget is full at `held`: multiplicative decrease, once per gap so
  // a burst of refusals counts as one; within the gap, no higher than held.
  if (now >= last_decrease_at_ + kDecreaseGapMs) {
    limit_ = std::max(1.0, std::min(limit_, static_cast<double>(held)) * kDecrease);
    last_decrease_at_ = now;
    ++decreases_;
  } else {
    limit_ = std::min(limit_, static_cast<double>(held));
  }
  // No backoff: the limit decides when the next login goes.
  return 0;
}

bool Upstream::raise_limit(TimeMs now) {
  if (!adaptive_ || limit() >= cap_ || open_ < limit()) return false;
  if (now < last_raise_at_ + kRaiseEveryMs || now < no_raise_until_) return false;
  limit_ = std::min(limit_ + 1.0, static_cast<double>(cap_));
  last_raise_at_ = now;
  return true;
}

bool Upstream::wants_survey(TimeMs now) const {
  if (!adaptive_ || survey_interval_ms_ == 0 || surveys_off_) return false;
  // A survey whose server vanished without an answer is given up after 10 s.
  if (survey_started_at_ != 0 && now < survey_started_at_ + 10'000) return false;
  return now >= next_survey_at_;
}

void Upstream::on_survey(TimeMs now, const BudgetSurvey& survey) {
  survey_started_at_ = 0;
  ++surveys_;
  if (survey.budget() > 0)
    budget_ = static_cast<uint32_t>(std::min<int64_t>(survey.budget(), 1'000'000));
  if (survey.contended(logged_in())) {
    mark_contended(now);
    return;
  }
  // The whole budget is this pgmux's, at its cap: an instance that has
  // none cannot say it is waiting, so one server is given back for a while
  // (kYieldMs) in case one is. If none is, the limit rises again.
  if (adaptive_ && survey.full() && open_ >= cap_ && cap_ > 1) {
    limit_ = static_cast<double>(cap_ - 1);
    no_raise_until_ = now + kYieldMs;
    ++yields_;
  }
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
