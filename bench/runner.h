// The run: owns the clients and the loop's other handles, ramps the
// connections, schedules transactions (closed loop, or open loop at a fixed
// rate), keeps the statistics, and stops after the duration or the number of
// transactions. One thread, one libuv loop.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <queue>
#include <string>
#include <utility>
#include <vector>

#include "bench/client.h"
#include "bench/conninfo.h"
#include "bench/options.h"
#include "bench/report.h"
#include "bench/scenario.h"

namespace pgmux::bench {

class Runner final : public ClientEvents {
 public:
  // `options`, `targets` and `scenario` must outlive the runner.
  Runner(uv_loop_t* loop, const Options& options, const ConnTargets& targets,
         const Scenario& scenario);
  ~Runner() override;
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  // Starts the handles; uv_run(loop) then runs until the end, when every
  // handle of the runner is closed.
  void start();
  // What happened. REQUIRES: uv_run has returned.
  Results take_results();

 private:
  enum class Phase { kRamp, kMeasure, kStopped };
  // A client to act on at `due_ns`: reconnect after backoff, or give up a
  // handshake that is still at `generation`.
  struct Timed {
    uint64_t due_ns;
    Client* client;
    uint64_t generation;
    bool operator>(const Timed& other) const { return due_ns > other.due_ns; }
  };
  using TimedQueue = std::priority_queue<Timed, std::vector<Timed>, std::greater<>>;

  static void on_tick_cb(uv_timer_t* timer) noexcept;
  static void on_signal_cb(uv_signal_t* signal, int signum) noexcept;

  // ClientEvents.
  void on_connected(Client& client, uint64_t connect_us) override;
  void on_ready(Client& client) override;
  void on_transaction_done(Client& client) override;
  void on_transaction_failed(Client& client, std::string_view sqlstate,
                             std::string_view message) override;
  void on_connection_lost(Client& client, LostWhile during, std::string_view sqlstate,
                          std::string_view message) override;

  void on_tick();
  void request_connect(Client& client);
  void start_handshakes();
  void first_attempt_done();
  void begin_measuring();
  // A client with nothing to do: give it work now, or park it.
  void dispatch(Client& client);
  void start_work(Client& client, uint64_t scheduled_ns);
  bool may_start_more() const;
  bool free_for_work(const Client& client) const;
  void close_interval(uint64_t now);
  void print_progress(const Interval& interval);
  void stop();
  uint64_t slot_ns(uint64_t slot) const;
  void schedule_retry(Client& client);

  uv_loop_t* loop_;
  const Options& options_;
  const ConnTargets& targets_;
  const Scenario& scenario_;
  Rng rng_;
  bool tty_;

  uv_timer_t tick_{};
  uv_signal_t sigint_{};
  bool handles_open_ = false;

  std::vector<std::unique_ptr<Client>> clients_;
  std::deque<Client*> connect_queue_;
  int handshakes_ = 0;  // In flight.
  bool starting_handshakes_ = false;
  TimedQueue backoff_;
  TimedQueue deadlines_;
  std::vector<Client*> parked_;  // Ready, waiting for a rate slot.
  int first_attempts_ = 0;       // Clients whose first handshake ended.
  int connected_ = 0;

  Phase phase_ = Phase::kRamp;
  uint64_t start_ns_ = 0;
  uint64_t measure_ns_ = 0;
  uint64_t stop_ns_ = 0;
  uint64_t started_ = 0;  // Transactions started while measuring.
  uint64_t next_slot_ = 0;
  int in_flight_ = 0;

  uint64_t interval_start_ns_ = 0;
  uint64_t interval_transactions_ = 0;
  uint64_t interval_errors_ = 0;
  Histogram interval_latency_;
  bool progress_printed_ = false;

  Results results_;
};

}  // namespace pgmux::bench
