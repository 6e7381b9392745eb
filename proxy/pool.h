// Pools: which server serves which client.
//
// A Pool serves one client-facing database (and its one upstream user). It
// owns no connections (the Proxy's registries do); it links them:
//   opening_  servers connecting or logging in
//   idle_     servers ready for a client (LIFO: hot connections stay hot)
//   checking_ idle servers proving themselves alive (a Sync round trip)
//             before reuse, after server_check_delay unused
//   active_   servers attached to a client
//   waiting_  clients with a request and no server (FIFO, the wait queue)
//   welcome_  clients whose login waits for the pool's first server login
// Each connection records the list it is on (pool_list), and that record,
// never the connection's own state, decides where it is unlinked from. A
// logged-in server has no idle/checking/active state of its own: its list
// is its state.
//
// A Pool depends on its PoolHost (clock, randomness, config, opening
// servers and probes) and sees servers and clients through PooledServer and
// PooledClient (proxy/pool_member.h), so it is unit-tested alone. The budget
// and backoff it obeys are its Upstream's (proxy/upstream.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "protocol/result.h"
#include "proxy/list.h"
#include "proxy/pool_member.h"
#include "proxy/statements.h"
#include "proxy/stats.h"
#include "proxy/tls_session.h"
#include "proxy/upstream.h"

namespace pgmux::proxy {

class Pool {
 public:
  // The Pool keeps its own copy of `database`; `upstream` must outlive it.
  Pool(PoolHost& host, config::Database database, Upstream& upstream);
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const config::Database& database() const { return database_; }
  Upstream& upstream() { return *upstream_; }

  // ---- Reload ----
  // Takes the reloaded upstream settings of its database (the name stays).
  // With `reconnect` (the connection settings changed) a new generation
  // starts: logins under way and idle servers close now, active servers when
  // they are released. A new endpoint moves the pool to
  // `upstream`; its servers keep counting against the old one until they
  // close. The TLS context, if any, is replaced by the caller.
  void reconfigure(const config::Database& database, Upstream& upstream, bool reconnect);
  // The database is gone from the configuration: no new client may log in
  // to it (the Proxy's find_pool skips it); its clients are still served.
  void retire() { retired_ = true; }
  void unretire() { retired_ = false; }
  bool retired() const { return retired_; }
  uint64_t generation() const { return generation_; }
  // Drain, as the host says (PoolHost::draining_clients, holding_servers).
  bool draining_clients() const { return host_.draining_clients(); }
  const std::string& name() const { return database_.name; }
  // TLS towards the upstream, or nullptr when sslmode is disable.
  const TlsContext* upstream_tls() const { return upstream_tls_.get(); }
  void set_upstream_tls(std::unique_ptr<TlsContext> context) {
    if (upstream_tls_) old_tls_.push_back(std::move(upstream_tls_));
    upstream_tls_ = std::move(context);
  }
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
  void request_welcome(PooledClient* client);
  // A client with a request and no server: attach an idle server or queue.
  void acquire(PooledClient* client);
  // A client leaves the queue or the welcome list (closed, timed out).
  // REQUIRES: client->pool_list is kWaiting or kWelcome.
  void forget(PooledClient* client);

  // ---- Servers ----
  void on_server_opening(PooledServer* server);  // Counted against the cap.
  void on_server_ready(PooledServer* server);    // Login done.
  void on_server_checked(PooledServer* server);  // The idle check passed.
  // The budget survey (proxy/budget.h) on an idle server answered, or
  // failed with the server still fit for clients; it goes back to the pool.
  void on_survey(PooledServer* server, const BudgetSurvey& survey);
  void on_survey_failed(PooledServer* server, const std::string& why);
  // The client is done with its server at ReadyForQuery 'I'.
  void release(PooledServer* server);
  // Connect or login failed; backs off, and tells waiting clients when the
  // upstream rejected pgmux itself. The server closes right after.
  void on_server_login_failed(PooledServer* server, const protocol::Error& error,
                              LoginFailure kind);
  // A server starts closing (from any state): unlinks it and frees its slot
  // in the budget. The Proxy frees the object later (Proxy::on_server_freed).
  void on_server_closing(PooledServer* server);

  // ---- Time and capacity ----
  // Called by the janitor every tick: deadlines, connect timeouts, lifetime,
  // idle trim, then open_needed.
  void tick(TimeMs now);
  // Opens what is needed and allowed now: the warm minimum, then servers for
  // waiting clients; starts a probe while the upstream is down.
  void open_needed(TimeMs now);
  // Opens servers while clients wait and the budget allows.
  void launch_if_needed(TimeMs now);
  // Closes one idle server so another pool on the same upstream can open one.
  bool give_up_idle_server();
  // A probe started by host.probe(*this) ended. When it connected while the
  // upstream was backing off, the backoff ends and every pool on the upstream
  // opens what it needs (one login first: the upstream is still failing).
  void on_probe_done(bool connected);

  bool has_welcome() const { return !welcome_params_.empty(); }
  const ParameterList& welcome_params() const { return welcome_params_; }
  // Named prepared statements of this pool's clients and servers.
  StatementRegistry& statements() { return statements_; }
  // Whether the server reports this (normalised) parameter with
  // ParameterStatus and a client may set it; its value on a fresh server.
  bool reports(std::string_view name) const { return baseline_value(name) != nullptr; }
  const std::string* baseline_value(std::string_view name) const;
  size_t waiting_count() const { return waiting_.size(); }
  size_t welcome_count() const { return welcome_.size(); }
  size_t idle_count() const { return idle_.size(); }
  size_t active_count() const { return active_.size(); }
  size_t opening_count() const { return opening_.size(); }
  size_t checking_count() const { return checking_.size(); }
  // The client at the head of the wait queue, or null.
  PooledClient* first_waiting() const { return waiting_.front(); }
  // Logged-in clients of this pool (idle, waiting or active); the
  // ClientConn reports its arrival after the welcome and its departure.
  size_t client_count() const { return clients_; }
  void on_client_joined() { ++clients_; }
  void on_client_left() { --clients_; }
  // Counters and histograms (proxy/stats.h).
  PoolStats& stats() { return stats_; }
  const PoolStats& stats() const { return stats_; }

  // ---- Operations (the admin console's PAUSE, RESUME, RECONNECT, KILL) ----
  // Hands out no server: idle servers close now, the others as they are
  // released or logged in. Clients that ask for a server queue (subject to
  // query_wait_timeout) until resume().
  void pause();
  void resume();
  bool paused() const { return paused_; }
  // Every server open now is closed at its next release (idle ones now);
  // fresh ones open as clients need them.
  void reconnect();
  // Servers open since before the last reconnect() (WAIT_CLOSE waits for 0).
  size_t stale_count() const;
  // Every server of the pool, in any list.
  size_t server_count() const {
    return opening_.size() + idle_.size() + checking_.size() + active_.size();
  }
  // Closes every server now (active ones too: their clients lose them).
  void close_servers(const char* reason);

  void close_all();  // Shutdown.

 private:
  using ServerList = IntrusiveList<PooledServer, PoolLink>;
  using ClientList = IntrusiveList<PooledClient, PoolLink>;

  ServerList& servers(PoolList where);
  ClientList& clients(PoolList where);
  void link(PooledServer* server, PoolList where, bool front = false);
  void unlink(PooledServer* server);
  void link(PooledClient* client, PoolList where);
  void unlink(PooledClient* client);
  PooledClient* pop(PoolList where);
  void attach(PooledServer* server, PooledClient* client);
  void offer(PooledServer* server);  // To the first waiter, else idle.
  // Whether this pool wants another server: waiting clients beyond those
  // being opened for, or fewer than min_server_connections.
  bool wants_servers() const;
  // How many servers to keep warm now: min_servers(), but none while the
  // upstream budget is contended and at most one once it has been.
  uint32_t warm_servers(TimeMs now) const;
  // Surveys the budget on the coldest idle server when the upstream wants it.
  void start_survey(TimeMs now);
  // Moves `server` to the checking list and sends it the survey's query.
  void survey_on(PooledServer* server);
  // min_server_connections, or 0 once retired or while pgmux drains.
  uint32_t min_servers() const {
    if (retired_ || host_.draining_clients() || host_.holding_servers()) return 0;
    return host_.config().min_server_connections;
  }
  void fail_waiters(const protocol::Error& error);
  void set_baseline();

  PoolHost& host_;
  config::Database database_;
  Upstream* upstream_;
  uint64_t generation_ = 0;
  bool retired_ = false;
  std::unique_ptr<TlsContext> upstream_tls_;
  // Contexts replaced by a reload: a server or cancel opened with one may
  // still point at it, so it lives as long as the pool.
  std::vector<std::unique_ptr<TlsContext>> old_tls_;
  bool plaintext_refused_ = false;  // sslmode=allow: see asks_for_tls().
  ParameterList welcome_params_;
  ParameterList baseline_;  // Normalised names.
  StatementRegistry statements_;
  ServerList opening_;
  ServerList idle_;
  ServerList checking_;
  ServerList active_;
  ClientList waiting_;
  ClientList welcome_;
  size_t clients_ = 0;
  bool paused_ = false;
  PoolStats stats_;
};

}  // namespace pgmux::proxy
