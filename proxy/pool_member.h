// What a Pool sees of the connections it links, and of the process it runs
// in. Pool talks to servers and clients through these narrow interfaces only,
// so its logic (queue, deadlines, backoff, the cap, recycling) is unit-tested
// with fakes and an injected clock, without sockets (proxy/pool_test.cpp).
//
// In pgmux every PooledServer is a ServerConn and every PooledClient a
// ClientConn. The calls cross the seam a few times per transaction (attach,
// release), never per message.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "proxy/list.h"

namespace pgmux::proxy {

class Pool;
class Upstream;

using TimeMs = uint64_t;

// The FATAL 57P01 wording of PostgreSQL (and PgBouncer) for a connection
// ended by a shutdown.
inline constexpr std::string_view kAdminShutdownMessage =
    "terminating connection due to administrator command";  // uv_now(): milliseconds, monotonic.
using ParameterList = std::vector<std::pair<std::string, std::string>>;

// Why a server's connect or login failed, which decides what waiting
// clients see.
enum class LoginFailure {
  kNoCapacity,   // The upstream is full (53300, 57P03, Supavisor refusals): retry, clients wait.
  kUnreachable,  // Resolve, connect or the connection failed: retry, clients wait.
  kRejected,     // The upstream refused pgmux (password, TLS, database): clients are told.
};

// Which of its pool's lists a server or a client is on. Managed by Pool
// only: the list a connection is on is the truth, never its own state.
enum class PoolList : uint8_t { kNone, kOpening, kIdle, kChecking, kActive, kWaiting, kWelcome };

class PooledClient;

// A server connection, as its Pool sees it.
class PooledServer : public PoolLink {
 public:
  PoolList pool_list = PoolList::kNone;  // Managed by Pool only.
  uint64_t opening_since_us = 0;         // now_us() at on_server_opening; for stats.
  // The budget it counts against and its pool's generation when it opened;
  // set by Pool::on_server_opening. A reload may move the pool to another
  // upstream; a reload that changes its connection settings, or RECONNECT,
  // starts a new generation: the server still counts against the upstream it
  // opened on, and an old generation is closed at release.
  Upstream* upstream = nullptr;
  uint64_t generation = 0;
  // A budget survey is in flight on it (on the checking list); set and
  // cleared by Pool.
  bool surveying = false;

  virtual const std::string& tag() const = 0;
  // The ParameterStatus set of its login.
  virtual const ParameterList& parameters() const = 0;
  virtual TimeMs opened_at() const = 0;
  virtual TimeMs idle_since() const = 0;
  // When it is due for recycling (server_lifetime minus jitter).
  virtual TimeMs expires_at() const = 0;
  virtual PooledClient* pooled_client() const = 0;
  // Whether an idle server may be handed out (nothing unread from it, its
  // connection open): checked at every hand-out.
  virtual bool seems_alive() = 0;
  // Proves an idle server alive with a round trip; the answer comes back
  // through Pool::on_server_checked, or the server closes.
  virtual void start_check() = 0;
  virtual TimeMs checking_since() const = 0;
  // Sends the budget survey (proxy/budget.h) on an idle server; the answer
  // comes back through Pool::on_survey or on_survey_failed, or the server
  // closes. Counts as checking (checking_since).
  virtual void start_survey() = 0;
  // Lent to `client` for a transaction / back to idle.
  virtual void attach(PooledClient* client) = 0;
  virtual void detach() = 0;
  // Closes the connection; calls Pool::on_server_closing before returning.
  virtual void close(const char* reason) = 0;

 protected:
  ~PooledServer() = default;
};

// A client connection, as its Pool sees it.
class PooledClient : public PoolLink {
 public:
  PoolList pool_list = PoolList::kNone;  // kWaiting or kWelcome; managed by Pool only.
  TimeMs pool_since = 0;                 // When it joined pool_list; managed by Pool only.
  uint64_t queued_at_us = 0;             // now_us() when it joined the wait queue, else 0.

  virtual const std::string& tag() const = 0;
  // Sends AuthenticationOk, `params`, BackendKeyData and ReadyForQuery.
  virtual void welcome(const ParameterList& params) = 0;
  // `server` serves the client's waiting request.
  virtual void attach(PooledServer* server) = 0;
  // The pool took the server back at the end of a transaction.
  virtual void on_server_released() = 0;
  // The current request gets an ERROR; the connection stays usable.
  virtual void fail_request(std::string_view sqlstate, std::string_view message,
                            std::string_view hint) = 0;
  // FATAL, then the connection closes.
  virtual void fail(std::string_view sqlstate, std::string_view message, std::string_view hint) = 0;

 protected:
  ~PooledClient() = default;
};

// What a Pool needs from the process it runs in: the clock, randomness, the
// configuration, and opening connections. The Proxy implements it.
class PoolHost {
 public:
  virtual TimeMs now() const = 0;
  virtual std::mt19937_64& rng() = 0;
  virtual const config::Config& config() const = 0;
  virtual bool stopping() const = 0;
  // Draining (SIGTERM, SHUTDOWN WAIT_FOR_CLIENTS): each client is closed
  // with 57P01 at its next transaction boundary.
  virtual bool draining_clients() const { return false; }
  // Paused (SIGINT, SHUTDOWN WAIT_FOR_SERVERS): no server is handed out;
  // clients that want one wait in the queue until the process stops.
  virtual bool holding_servers() const { return false; }
  // Starts a server connection for `pool`, which calls pool.on_server_opening
  // before this returns (and may fail, and close, before it returns too).
  virtual void open_server(Pool& pool) = 0;
  // Starts a probe of `pool`'s upstream: a bare TCP connect, closed at once,
  // no login. Its result comes back through pool.on_probe_done, never
  // before this returns.
  virtual void probe(Pool& pool) = 0;

 protected:
  ~PoolHost() = default;
};

}  // namespace pgmux::proxy
