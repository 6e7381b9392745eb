// Pools and the upstream connection budget.
//
// A Pool serves one client-facing database (and its one upstream user). It
// owns no connections (the Proxy's registry does); it links them:
//   opening_  servers connecting or logging in
//   idle_     servers ready for a client (LIFO: hot connections stay hot)
//   checking_ idle servers proving themselves alive (a Sync round trip)
//             before reuse, after server_check_delay unused
//   active_   servers attached to a client
//   waiting_  clients with a request and no server (FIFO, the wait queue)
//   welcome_  clients whose login waits for the pool's first server login
//
// An Upstream is one host:port. Its cap (max_server_connections) counts every
// server of every pool that uses it, including those still opening, so the
// upstream never sees more connections than the cap. After a failed or
// refused connect it backs off exponentially with jitter before the next try.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "proxy/client_conn.h"
#include "proxy/list.h"
#include "proxy/server_conn.h"
#include "proxy/statements.h"
#include "proxy/tls_session.h"

namespace pgmux::proxy {

class Proxy;
class Pool;

using TimeMs = uint64_t;  // uv_now(): milliseconds, monotonic.

class Upstream {
 public:
  Upstream(std::string endpoint, uint32_t cap, const config::Config& config);

  const std::string& endpoint() const { return endpoint_; }
  uint32_t cap() const { return cap_; }
  uint32_t open() const { return open_; }
  bool has_room() const { return open_ < cap_; }
  // False while backing off after a failure.
  bool may_connect(TimeMs now) const { return now >= retry_at_; }

  void on_opened() { ++open_; }
  void on_closed() { --open_; }
  // A connect or login failed for want of capacity or reachability. Returns
  // the delay before the next attempt.
  uint64_t on_failure(TimeMs now, std::mt19937_64& rng);
  void on_success() {
    failures_ = 0;
    retry_at_ = 0;
  }
  uint32_t failures() const { return failures_; }
  const std::string& last_error() const { return last_error_; }
  void set_last_error(std::string error) { last_error_ = std::move(error); }

  std::vector<Pool*>& pools() { return pools_; }

  // Clients pinned to one of this upstream's servers.
  uint32_t pinned() const { return pinned_; }
  void on_pinned() { ++pinned_; }
  void on_unpinned() { --pinned_; }

 private:
  uint32_t pinned_ = 0;
  std::string endpoint_;
  uint32_t cap_;
  uint64_t retry_initial_ms_;
  uint64_t retry_max_ms_;
  uint32_t open_ = 0;
  uint32_t failures_ = 0;
  TimeMs retry_at_ = 0;
  std::string last_error_;
  std::vector<Pool*> pools_;
};

class Pool {
 public:
  Pool(Proxy& proxy, const config::Database& database, Upstream& upstream);
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const config::Database& database() const { return database_; }
  Upstream& upstream() { return upstream_; }
  const std::string& name() const { return database_.name; }
  // TLS towards the upstream, or nullptr when sslmode is disable.
  const TlsContext* upstream_tls() const { return upstream_tls_.get(); }
  void set_upstream_tls(std::unique_ptr<TlsContext> context) { upstream_tls_ = std::move(context); }
  // Whether a new server sends an SSLRequest first: always with a context,
  // but under sslmode=allow only once the upstream has refused a plaintext
  // login (libpq's allow then retries with TLS; the pool remembers it).
  bool asks_for_tls() const {
    return upstream_tls_ != nullptr &&
           (database_.upstream.sslmode != config::SslMode::kAllow || plaintext_refused_);
  }
  void on_plaintext_refused() { plaintext_refused_ = true; }

  // ---- Clients ----
  // A logged-in client needs the welcome (ParameterStatus set): sent at once
  // if the pool has one, else after the first server login.
  void request_welcome(ClientConn* client);
  // A client with a request and no server: attach an idle server or queue.
  void acquire(ClientConn* client);
  // A client leaves the queue or the welcome list (closed, timed out).
  void forget(ClientConn* client);

  // ---- Servers ----
  void on_server_opening(ServerConn* server);  // Counted against the cap.
  void on_server_ready(ServerConn* server);    // Login done.
  void on_server_checked(ServerConn* server);  // The idle check passed.
  // The client is done with its server at ReadyForQuery 'I'.
  void release(ServerConn* server);
  // Connect or login failed; backs off, and tells waiting clients when the
  // upstream rejected pgmux itself.
  void on_server_login_failed(ServerConn* server, const protocol::Error& error, LoginFailure kind);
  // A server is going away (any state); unlinks it and frees its slot.
  void on_server_closed(ServerConn* server);

  // Called by the janitor every tick: timeouts, lifetime, warm minimum,
  // launching after backoff.
  void tick(TimeMs now);
  // Opens servers while clients wait and the budget allows.
  void launch_if_needed(TimeMs now);
  // Closes one idle server so another pool on the same upstream can open one.
  bool give_up_idle_server();

  bool has_welcome() const { return !welcome_params_.empty(); }
  const std::vector<std::pair<std::string, std::string>>& welcome_params() const {
    return welcome_params_;
  }
  // Named prepared statements of this pool's clients and servers.
  StatementRegistry& statements() { return statements_; }
  // Whether the server reports this (normalised) parameter with
  // ParameterStatus and a client may set it; its value on a fresh server.
  bool reports(std::string_view name) const { return baseline_value(name) != nullptr; }
  const std::string* baseline_value(std::string_view name) const;
  size_t waiting_count() const { return waiting_.size(); }
  size_t idle_count() const { return idle_.size(); }
  size_t active_count() const { return active_.size(); }
  size_t opening_count() const { return opening_.size(); }
  size_t checking_count() const { return checking_.size(); }

  void close_all();  // Shutdown.

 private:
  IntrusiveList<ServerConn, PoolLink>& list(PoolList where);
  void link(ServerConn* server, PoolList where, bool front = false);
  void unlink(ServerConn* server);
  void attach(ServerConn* server, ClientConn* client);
  void offer(ServerConn* server);  // To the first waiter, else idle.
  size_t server_count() const {
    return opening_.size() + idle_.size() + checking_.size() + active_.size();
  }
  void fail_waiters(const protocol::Error& error);
  void set_baseline();

  Proxy& proxy_;
  const config::Database& database_;
  Upstream& upstream_;
  std::unique_ptr<TlsContext> upstream_tls_;
  bool plaintext_refused_ = false;  // sslmode=allow: see asks_for_tls().
  std::vector<std::pair<std::string, std::string>> welcome_params_;
  std::vector<std::pair<std::string, std::string>> baseline_;  // Normalised names.
  StatementRegistry statements_;
  IntrusiveList<ServerConn, PoolLink> opening_;
  IntrusiveList<ServerConn, PoolLink> idle_;
  IntrusiveList<ServerConn, PoolLink> checking_;
  IntrusiveList<ServerConn, PoolLink> active_;
  IntrusiveList<ClientConn, PoolLink> waiting_;
  IntrusiveList<ClientConn, PoolLink> welcome_;
};

}  // namespace pgmux::proxy
