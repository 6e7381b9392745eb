// One upstream host:port: the connection budget every pool on it shares, and
// what pgmux does after a failed or refused connect.
//
// The cap (max_server_connections) counts every server of every pool on the
// upstream, including those still opening, so the upstream never sees more
// connections than the cap. After a failure the upstream backs off
// (server_retry_initial doubling to server_retry_max, +-25 % jitter), and
// until a login succeeds again at most one login is in flight at a time.
//
// How the backoff may end depends on the failure. An upstream that is down
// (unreachable, or 57P03 "starting up" / "shutting down") is probed with a
// bare TCP connect every server_probe_interval; when one connects the backoff
// ends and one login is tried at once. An upstream that is up but full (53300,
// Supavisor's refusals) or that rejected pgmux is only retried when the
// backoff runs out: a probe cannot tell when it has room.
//
// Sharing the budget (budget_sharing = adaptive, the default). Other pgmux
// instances, or other apps, may hold part of the upstream's budget, so the
// cap pgmux obeys is its own `limit`, at most max_server_connections:
//   - a capacity refusal (53300, Supavisor's) while pgmux holds servers
//     lowers the limit to 3/4 of the servers held (once per 500 ms; the
//     limit is fractional, so small shares shrink by the same fraction), and
//     the servers above it close as their clients release them; the login
//     that was refused is not retried until the limit allows;
//   - while clients wait on the limit and nothing was refused for 300 ms,
//     it rises by one every 50 ms (additive increase, multiplicative
//     decrease: instances that all want more converge on equal shares, as
//     TCP flows do);
//   - the budget is contended for 30 s after a refusal, or after a survey
//     (proxy/budget.h) found it full with someone else on it. While
//     contended, pools open no warm servers and give back idle servers above
//     one after 500 ms; once it has been contended, pgmux keeps one warm
//     server, not min_server_connections.
// A refusal while pgmux holds no server backs off as before, but for at most
// 1 s, so an instance that gets its share late still starts soon.
//
// An instance that holds the whole budget at its cap never probes, so it
// would never hear of an instance that has nothing (a new replica): the
// survey, run on a released server every 5 s while clients wait, tells it,
// and it gives one server back for 1.5 s; a newcomer retrying every second
// takes it, and from then on refusals share the budget out.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "proxy/budget.h"
#include "proxy/pool_member.h"

namespace pgmux::proxy {

class Pool;

class Upstream {
 public:
  // What the last failure says about the upstream.
  enum class Outage {
    kDown,  // Unreachable or 57P03: a probe can tell when it is back.
    kFull,  // Up but full, or it rejected pgmux: only a login can tell.
  };

  Upstream(std::string endpoint, uint32_t cap, const config::Config& config);
  Upstream(const Upstream&) = delete;
  Upstream& operator=(const Upstream&) = delete;

  // A reload: the new cap (servers above it close as they go idle) and
  // retry and probe timings.
  void configure(uint32_t cap, const config::Config& config);

  const std::string& endpoint() const { return endpoint_; }
  uint32_t cap() const { return cap_; }    // max_server_connections.
  uint32_t open() const { return open_; }  // Including those still opening.
  uint32_t opening() const { return opening_; }
  bool has_room() const { return open_ < limit(); }
  // A server may start opening now: the upstream is not backing off, and
  // after a failure no other login is in flight.
  bool may_open(TimeMs now) const { return now >= retry_at_ && (failures_ == 0 || opening_ == 0); }

  void on_opening() {
    ++open_;
    ++opening_;
  }
  void on_logged_in() { --opening_; }
  // REQUIRES: `opening` says whether the server had not logged in yet.
  void on_closed(bool opening) {
    --open_;
    if (opening) --opening_;
  }

  // A connect or login failed. Returns the delay before the next attempt.
  uint64_t on_failure(TimeMs now, std::mt19937_64& rng, Outage outage);
  void on_success() {
    failures_ = 0;
    retry_at_ = 0;
  }
  uint32_t failures() const { return failures_; }
  TimeMs retry_at() const { return retry_at_; }
  const std::string& last_error() const { return last_error_; }
  void set_last_error(std::string error) { last_error_ = std::move(error); }

  // ---- Probes (only while down) ----
  // True when a probe should start now: backing off after kDown, probes
  // enabled, none in flight, no login in flight, and the interval has passed
  // since the last probe started.
  bool wants_probe(TimeMs now) const;
  void on_probe_started(TimeMs now) {
    probe_in_flight_ = true;
    next_probe_at_ = now + probe_interval_ms_;
  }
  // Returns true when the probe ended the backoff: it connected while the
  // upstream was still backing off.
  bool on_probe_done(bool connected, TimeMs now);
  bool probe_in_flight() const { return probe_in_flight_; }
  bool probes() const { return probe_interval_ms_ > 0; }  // server_probe_interval is not 0.

  std::vector<Pool*>& pools() { return pools_; }

  // ---- Reach (for /readyz) ----
  // Servers past their login now.
  uint32_t logged_in() const { return open_ - opening_; }
  // When pgmux last connected to the upstream: a server login, a passed idle
  // check or a probe that connected (uv_now() ms; 0: never).
  TimeMs last_reached() const { return last_reached_; }
  void on_reached(TimeMs now) { last_reached_ = now; }

  // ---- Sharing the budget ----
  static constexpr double kDecrease = 0.75;              // Multiplicative decrease...
  static constexpr uint64_t kDecreaseGapMs = 500;        // ...at most once per gap.
  static constexpr uint64_t kRaiseEveryMs = 50;          // +1 at most this often...
  static constexpr uint64_t kRaiseAfterRefusalMs = 300;  // ...and this long after a refusal.
  static constexpr uint64_t kContendedMs = 30'000;       // Contended this long after a sign.
  static constexpr uint64_t kIdleLeaseMs = 500;          // Idle servers above one, when contended.
  static constexpr uint64_t kRefusedRetryMaxMs = 1'000;  // Backoff cap with nothing held.
  static constexpr uint64_t kBusySurveyEveryMs = 5'000;  // At the cap, with clients waiting.
  static constexpr uint64_t kYieldMs = 1'500;            // One server given back this long.

  bool adaptive() const { return adaptive_; }
  // The cap pgmux holds itself to now (max_server_connections when off).
  uint32_t limit() const {
    if (!adaptive_) return cap_;
    const auto whole = static_cast<uint32_t>(limit_);
    return whole < 1 ? 1 : whole;
  }
  // A refusal or a full shared survey within the last kContendedMs.
  bool contended(TimeMs now) const { return adaptive_ && now < contended_until_; }
  // Contended at least once since start.
  bool shared() const { return adaptive_ && shared_; }
  // A capacity refusal (53300, Supavisor's; not 57P03). Returns the delay
  // before the next login.
  uint64_t on_refused(TimeMs now, std::mt19937_64& rng);
  // Clients wait and the limit holds them back: one more, when allowed.
  // Returns whether the limit rose.
  bool raise_limit(TimeMs now);
  uint64_t refusals() const { return refusals_; }
  uint64_t decreases() const { return decreases_; }

  // The survey (adaptive and budget_survey_interval > 0): at most one in
  // flight per upstream, one per interval. A survey that fails (an error,
  // an odd answer) turns surveys off for this upstream.
  bool wants_survey(TimeMs now) const;
  void on_survey_started(TimeMs now) {
    survey_started_at_ = now;
    next_survey_at_ = now + survey_interval_ms_;
  }
  void on_survey(TimeMs now, const BudgetSurvey& survey);
  void on_survey_failed() {
    survey_started_at_ = 0;
    surveys_off_ = true;
  }
  void on_survey_lost() { survey_started_at_ = 0; }  // Its server closed.
  uint64_t surveys() const { return surveys_; }
  // At the cap with clients waiting, no server is idle to survey on, so a
  // released server is surveyed before the next client gets it, at most
  // every kBusySurveyEveryMs. If the survey finds the whole budget held by
  // this pgmux, it yields one server for kYieldMs (see on_survey).
  bool wants_busy_survey(TimeMs now) const {
    return open_ >= cap_ && now >= next_busy_survey_at_ && wants_survey(now);
  }
  void on_busy_survey_started(TimeMs now) {
    on_survey_started(now);
    next_busy_survey_at_ = now + kBusySurveyEveryMs;
  }
  uint64_t yields() const { return yields_; }
  // The budget the last survey reported (the role's limit, or the server's);
  // 0 before any.
  uint32_t budget() const { return budget_; }

  // Clients pinned to one of this upstream's servers.
  uint32_t pinned() const { return pinned_; }
  void on_pinned() { ++pinned_; }
  void on_unpinned() { --pinned_; }

 private:
  void mark_contended(TimeMs now) {
    shared_ = true;
    contended_until_ = now + kContendedMs;
  }

  std::string endpoint_;
  uint32_t cap_;
  uint64_t retry_initial_ms_;
  uint64_t retry_max_ms_;
  uint64_t probe_interval_ms_;  // 0: probes are off.
  uint32_t open_ = 0;
  uint32_t opening_ = 0;
  uint32_t pinned_ = 0;
  uint32_t failures_ = 0;
  TimeMs retry_at_ = 0;
  Outage outage_ = Outage::kFull;
  bool probe_in_flight_ = false;
  TimeMs last_reached_ = 0;
  TimeMs next_probe_at_ = 0;
  std::string last_error_;
  std::vector<Pool*> pools_;
  // Sharing the budget.
  bool adaptive_;
  // Fractional, so a small share shrinks by the same fraction as a large
  // one (integer 3/4 of 2 would be 1: half).
  double limit_;
  bool shared_ = false;
  TimeMs contended_until_ = 0;
  TimeMs no_raise_until_ = 0;
  TimeMs last_decrease_at_ = 0;
  TimeMs last_raise_at_ = 0;
  uint64_t refusals_ = 0;
  uint64_t decreases_ = 0;
  uint64_t survey_interval_ms_;
  TimeMs survey_started_at_ = 0;  // 0: none in flight.
  TimeMs next_survey_at_ = 0;
  bool surveys_off_ = false;
  uint64_t surveys_ = 0;
  uint64_t yields_ = 0;
  uint32_t budget_ = 0;  // From the last survey; 0: unknown.
  TimeMs next_busy_survey_at_ = 0;
};

}  // namespace pgmux::proxy
