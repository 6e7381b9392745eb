// One benchmark client: a libpq connection driven without blocking by a
// uv_poll_t on its socket. The client runs the steps of a transaction one
// after the other and tells its owner (ClientEvents) what happened; the
// owner decides what runs next.
//
// Callbacks into ClientEvents are always the last thing a client method
// does, so the owner may call back into the client (run(), close()) from
// inside them.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "bench/conninfo.h"
#include "bench/scenario.h"

namespace pgmux::bench {

class Client;

// What a connection was doing when it was lost.
enum class LostWhile { kConnecting, kIdle, kInTransaction };

class ClientEvents {
 public:
  virtual ~ClientEvents() = default;
  // The handshake finished after `connect_us`.
  virtual void on_connected(Client& client, uint64_t connect_us) = 0;
  // Connected, set up, and no transaction running: ready for run().
  virtual void on_ready(Client& client) = 0;
  // The transaction started by run() committed.
  virtual void on_transaction_done(Client& client) = 0;
  // The transaction failed with an error result; it has been rolled back and
  // the connection is ready again.
  virtual void on_transaction_failed(Client& client, std::string_view sqlstate,
                                     std::string_view message) = 0;
  // The connection failed or closed; the client is disconnected. `sqlstate`
  // is the server's, when it said why before closing (e.g. 57P01), else "".
  virtual void on_connection_lost(Client& client, LostWhile during, std::string_view sqlstate,
                                  std::string_view message) = 0;
};

class Client {
 public:
  enum class State { kDisconnected, kConnecting, kSetup, kReady, kBusy, kRollingBack };

  // `targets` and `scenario` must outlive the client.
  Client(uv_loop_t* loop, ClientEvents& events, const ConnTargets& targets, size_t target,
         const Scenario& scenario);
  ~Client();  // close()
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts a handshake. REQUIRES: state() == kDisconnected.
  void connect();
  // Starts the next transaction. REQUIRES: state() == kReady.
  void run(Rng& rng);
  // Drops the connection at once, without callbacks. Idempotent.
  void close();
  // Gives up the connection as if it had failed with `message`
  // (on_connection_lost follows), e.g. when a handshake takes too long.
  void fail(std::string_view message) { lost(message); }

  State state() const { return state_; }
  // Consecutive failed handshakes, for the owner's backoff.
  int connect_failures() const { return connect_failures_; }

  // The owner's bookkeeping, untouched by the client.
  struct OwnerData {
    size_t index = 0;
    uint64_t scheduled_ns = 0;  // When the current work was due (uv_hrtime), for latency.
    bool working = false;       // A transaction is counted as in flight.
    bool attempted = false;     // The first handshake has ended.
    uint64_t generation = 0;    // Handshakes started.
  };
  OwnerData owner;

 private:
  // A poll handle lives on the heap because libpq may move to a new socket
  // during a handshake (the next host, or a retry without TLS), and libuv
  // frees a handle only after its close callback: the old Watch is closed
  // and a new one made, each freed in its own close callback.
  struct Watch {
    uv_poll_t poll;
    Client* client;
    int fd;
    int events;
  };
  static void on_poll_cb(uv_poll_t* handle, int status, int events) noexcept;
  static void on_watch_closed(uv_handle_t* handle) noexcept;

  void on_poll(int status, int events);
  void poll_connect();
  void on_connected();
  void send_step();
  void flush();
  void drain();
  void step_done();
  void note_result(const PGresult* result);
  void lost(std::string_view message);
  bool watch(int events);
  void drop_watch();
  const Transaction& current() const;

  uv_loop_t* loop_;
  ClientEvents& events_;
  const ConnTargets& targets_;
  size_t target_;
  const Scenario& scenario_;

  State state_ = State::kDisconnected;
  PGconn* conn_ = nullptr;
  Watch* watch_ = nullptr;
  uint64_t connect_start_ns_ = 0;
  int connect_failures_ = 0;

  Transaction setup_;
  Transaction txn_;
  Transaction rollback_;
  size_t step_ = 0;
  bool failed_ = false;  // An error result in the current transaction.
  std::string error_sqlstate_;
  std::string error_message_;
};

}  // namespace pgmux::bench
