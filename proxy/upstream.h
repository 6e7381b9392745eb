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
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
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
  uint32_t cap() const { return cap_; }
  uint32_t open() const { return open_; }  // Including those still opening.
  uint32_t opening() const { return opening_; }
  bool has_room() const { return open_ < cap_; }
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

  // Clients pinned to one of this upstream's servers.
  uint32_t pinned() const { return pinned_; }
  void on_pinned() { ++pinned_; }
  void on_unpinned() { --pinned_; }

 private:
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
};

}  // namespace pgmux::proxy
