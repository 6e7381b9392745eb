#include "bench/runner.h"

#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>

namespace pgmux::bench {
namespace {

constexpr uint64_t kMs = 1'000'000;  // Nanoseconds.
constexpr uint64_t kTickMs = 1;
constexpr uint64_t kBackoffMinNs = 50 * kMs;
constexpr uint64_t kBackoffMaxNs = 2000 * kMs;

uint64_t seconds_to_ns(double seconds) { return static_cast<uint64_t>(seconds * 1e9); }

}  // namespace

Runner::Runner(uv_loop_t* loop, const Options& options, const ConnTargets& targets,
               const Scenario& scenario)
    : loop_(loop),
      options_(options),
      targets_(targets),
      scenario_(scenario),
      rng_(uv_hrtime() ^ static_cast<uint64_t>(::getpid())),
      tty_(!options.quiet && ::isatty(STDERR_FILENO) == 1) {
  clients_.reserve(static_cast<size_t>(options.clients));
  for (int i = 0; i < options.clients; ++i) {
    const size_t index = static_cast<size_t>(i);
    clients_.push_back(
        std::make_unique<Client>(loop_, *this, targets_, index % targets_.size(), scenario_));
    clients_.back()->owner.index = index;
  }
  results_.scenario = std::string(scenario_name(options.scenario));
  results_.protocol = options.protocol == Protocol::kExtended ? "extended" : "simple";
  results_.clients = options.clients;
  results_.rate = options.rate;
}

Runner::~Runner() {
  // Clients close their own poll handles; the loop must run once more
  // afterwards to free them (main does).
  clients_.clear();
}

void Runner::start() {
  uv_timer_init(loop_, &tick_);
  tick_.data = this;
  uv_signal_init(loop_, &sigint_);
  sigint_.data = this;
  handles_open_ = true;
  uv_timer_start(&tick_, &Runner::on_tick_cb, kTickMs, kTickMs);
  uv_signal_start(&sigint_, &Runner::on_signal_cb, SIGINT);
  start_ns_ = uv_hrtime();
  interval_start_ns_ = start_ns_;
  if (scenario_.connects_per_transaction()) {
    // churn: every transaction is a connection, so there is no ramp.
    first_attempts_ = options_.clients;
    begin_measuring();
    return;
  }
  for (auto& client : clients_) connect_queue_.push_back(client.get());
  start_handshakes();
}

Results Runner::take_results() { return std::move(results_); }

void Runner::on_tick_cb(uv_timer_t* timer) noexcept {
  static_cast<Runner*>(timer->data)->on_tick();
}

void Runner::on_signal_cb(uv_signal_t* signal, int /*signum*/) noexcept {
  static_cast<Runner*>(signal->data)->stop();
}

void Runner::request_connect(Client& client) {
  connect_queue_.push_back(&client);
  start_handshakes();
}

void Runner::start_handshakes() {
  // A connect that fails at once (no file descriptors left) comes back here
  // through on_connection_lost; the loop below already carries on, and
  // recursing once per queued client could exhaust the stack.
  if (starting_handshakes_) return;
  starting_handshakes_ = true;
  while (phase_ != Phase::kStopped && handshakes_ < options_.connect_concurrency &&
         !connect_queue_.empty()) {
    Client& client = *connect_queue_.front();
    connect_queue_.pop_front();
    ++handshakes_;
    ++client.owner.generation;
    deadlines_.push({uv_hrtime() + seconds_to_ns(options_.connect_timeout_s), &client,
                     client.owner.generation});
    client.connect();  // May fail at once: on_connection_lost runs inside.
  }
  starting_handshakes_ = false;
}

void Runner::on_connected(Client& client, uint64_t connect_us) {
  // Runs inside the client's handshake: touch no client here.
  --handshakes_;
  ++connected_;
  results_.connect.record(connect_us);
  if (!client.owner.attempted) {
    client.owner.attempted = true;
    ++first_attempts_;
  }
}

void Runner::on_ready(Client& client) {
  start_handshakes();                     // This handshake's slot is free.
  if (phase_ != Phase::kMeasure) return;  // begin_measuring() dispatches it.
  if (scenario_.connects_per_transaction()) {
    client.run(rng_);
    return;
  }
  dispatch(client);
}

void Runner::begin_measuring() {
  phase_ = Phase::kMeasure;
  measure_ns_ = uv_hrtime();
  interval_start_ns_ = measure_ns_;
  results_.connect_s = static_cast<double>(measure_ns_ - start_ns_) / 1e9;
  if (progress_printed_) {
    std::fputc('\n', stderr);
    progress_printed_ = false;
  }
  for (auto& client : clients_) {
    if (free_for_work(*client)) dispatch(*client);
  }
}

bool Runner::free_for_work(const Client& client) const {
  if (client.owner.working) return false;
  return scenario_.connects_per_transaction() ? client.state() == Client::State::kDisconnected
                                              : client.state() == Client::State::kReady;
}

bool Runner::may_start_more() const {
  return phase_ == Phase::kMeasure &&
         (options_.transactions == 0 || started_ < options_.transactions);
}

uint64_t Runner::slot_ns(uint64_t slot) const {
  return measure_ns_ + static_cast<uint64_t>(static_cast<double>(slot) * 1e9 / options_.rate);
}

void Runner::dispatch(Client& client) {
  if (!scenario_.runs_transactions() || !may_start_more()) return;
  if (options_.rate > 0) {
    const uint64_t due = slot_ns(next_slot_);
    if (due > uv_hrtime()) {
      parked_.push_back(&client);
      return;
    }
    ++next_slot_;
    start_work(client, due);
    return;
  }
  start_work(client, uv_hrtime());
}

void Runner::start_work(Client& client, uint64_t scheduled_ns) {
  ++started_;
  ++in_flight_;
  client.owner.scheduled_ns = scheduled_ns;
  client.owner.working = true;
  if (scenario_.connects_per_transaction()) {
    request_connect(client);
  } else {
    client.run(rng_);
  }
}

void Runner::on_transaction_done(Client& client) {
  const uint64_t now = uv_hrtime();
  if (scenario_.connects_per_transaction()) {
    // churn: the disconnect is part of the transaction.
    client.close();
    --connected_;
  }
  client.owner.working = false;
  --in_flight_;
  if (phase_ != Phase::kMeasure) return;
  const uint64_t latency_us = (now - std::min(now, client.owner.scheduled_ns)) / 1000;
  results_.latency.record(latency_us);
  interval_latency_.record(latency_us);
  ++results_.transactions;
  ++interval_transactions_;
  dispatch(client);
}

void Runner::on_transaction_failed(Client& client, std::string_view sqlstate,
                                   std::string_view message) {
  if (scenario_.connects_per_transaction()) {
    client.close();
    --connected_;
  }
  client.owner.working = false;
  --in_flight_;
  if (phase_ != Phase::kMeasure) return;
  results_.errors.add(sqlstate, message);
  ++interval_errors_;
  dispatch(client);
}

void Runner::on_connection_lost(Client& client, LostWhile during, std::string_view sqlstate,
                                std::string_view message) {
  if (during == LostWhile::kConnecting) {
    --handshakes_;
    ++results_.connect_failures;
    if (!client.owner.attempted) {
      client.owner.attempted = true;
      ++first_attempts_;
    }
  } else {
    --connected_;
  }
  if (client.owner.working) {
    client.owner.working = false;
    --in_flight_;
  }
  if (phase_ == Phase::kStopped) return;
  results_.errors.add(sqlstate, message);
  ++interval_errors_;
  schedule_retry(client);
  start_handshakes();
}

void Runner::schedule_retry(Client& client) {
  const int failures = std::clamp(client.connect_failures(), 1, 8);
  uint64_t delay = std::min(kBackoffMinNs << (failures - 1), kBackoffMaxNs);
  delay = delay / 2 + rng_.next() % (delay / 2 + 1);  // Jitter: half to all of it.
  backoff_.push({uv_hrtime() + delay, &client, 0});
}

void Runner::on_tick() {
  const uint64_t now = uv_hrtime();
  // Handshakes that took too long. libpq's connect_timeout does not apply
  // to PQconnectPoll, so the runner keeps the deadline.
  while (!deadlines_.empty() && deadlines_.top().due_ns <= now) {
    const Timed timed = deadlines_.top();
    deadlines_.pop();
    if (timed.client->owner.generation == timed.generation &&
        timed.client->state() == Client::State::kConnecting) {
      char message[64];
      std::snprintf(message, sizeof(message), "connect timeout (%.1f s)",
                    options_.connect_timeout_s);
      timed.client->fail(message);
    }
  }
  while (!backoff_.empty() && backoff_.top().due_ns <= now && phase_ != Phase::kStopped) {
    Client& client = *backoff_.top().client;
    backoff_.pop();
    if (scenario_.connects_per_transaction()) {
      if (phase_ == Phase::kMeasure) dispatch(client);
    } else {
      request_connect(client);
    }
  }
  const uint64_t progress_ns = seconds_to_ns(options_.progress_s);
  if (phase_ == Phase::kRamp) {
    if (first_attempts_ >= options_.clients) {
      begin_measuring();
    } else if (now - interval_start_ns_ >= progress_ns) {
      interval_start_ns_ = now;
      if (tty_) {
        std::fprintf(stderr, "\rconnecting: %d/%d connected, %llu failed\x1b[K", connected_,
                     options_.clients, static_cast<unsigned long long>(results_.connect_failures));
        progress_printed_ = true;
      }
    }
    return;
  }
  if (phase_ != Phase::kMeasure) return;
  // Open loop: parked clients take the slots that came due.
  while (!parked_.empty() && may_start_more() && slot_ns(next_slot_) <= now) {
    Client& client = *parked_.back();
    parked_.pop_back();
    // A parked client may have lost its connection since (it comes back
    // through on_ready after the reconnect), or be parked twice.
    if (free_for_work(client)) start_work(client, slot_ns(next_slot_++));
  }
  if (now - interval_start_ns_ >= progress_ns) close_interval(now);
  const bool time_up =
      options_.transactions == 0 && now - measure_ns_ >= seconds_to_ns(options_.duration_s);
  const bool count_reached =
      options_.transactions != 0 && started_ >= options_.transactions && in_flight_ == 0;
  if (time_up || count_reached) stop();
}

void Runner::close_interval(uint64_t now) {
  Interval interval;
  interval.t = static_cast<double>(now - measure_ns_) / 1e9;
  const double length = static_cast<double>(now - interval_start_ns_) / 1e9;
  interval.transactions = interval_transactions_;
  interval.tps = length > 0 ? static_cast<double>(interval_transactions_) / length : 0;
  interval.p50_us = interval_latency_.percentile(50);
  interval.p99_us = interval_latency_.percentile(99);
  interval.errors = interval_errors_;
  interval.connected = connected_;
  results_.timeline.push_back(interval);
  print_progress(interval);
  interval_start_ns_ = now;
  interval_transactions_ = 0;
  interval_errors_ = 0;
  interval_latency_.reset();
}

void Runner::print_progress(const Interval& interval) {
  if (!tty_) return;
  std::fprintf(stderr, "\r%s\x1b[K", progress_line(interval, options_.clients).c_str());
  progress_printed_ = true;
}

void Runner::stop() {
  if (phase_ == Phase::kStopped) return;
  const uint64_t now = uv_hrtime();
  if (phase_ == Phase::kRamp) {
    measure_ns_ = now;
    interval_start_ns_ = now;
    results_.connect_s = static_cast<double>(now - start_ns_) / 1e9;
  }
  // A last partial interval counts when it is at least half an interval, or
  // when it is the only one (a short --transactions run).
  const double rest_ns = static_cast<double>(now - interval_start_ns_);
  if ((rest_ns >= static_cast<double>(seconds_to_ns(options_.progress_s)) / 2 ||
       results_.timeline.empty()) &&
      rest_ns > 0) {
    close_interval(now);
  }
  if (progress_printed_) std::fputc('\n', stderr);
  phase_ = Phase::kStopped;
  stop_ns_ = now;
  results_.duration_s = static_cast<double>(stop_ns_ - measure_ns_) / 1e9;
  results_.connected = connected_;
  for (auto& client : clients_) client->close();
  connect_queue_.clear();
  parked_.clear();
  backoff_ = TimedQueue();
  deadlines_ = TimedQueue();
  if (handles_open_) {
    handles_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  }
}

}  // namespace pgmux::bench
