// The Proxy owns the event loop's contents: the listener, every client and
// server connection (through one registry each), the pools and upstream
// budgets, the janitor timer that drives every timeout, cancel forwarding and
// signal handling. One loop, one thread, no globals: several Proxies could
// run share-nothing on several loops. It is its pools' PoolHost: it opens
// their servers and runs their probes; and its clients' LoginHost.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/config.h"
#include "protocol/messages.h"
#include "protocol/result.h"
#include "protocol/scram_server.h"
#include "proxy/buffer.h"
#include "proxy/cancel.h"
#include "proxy/client_conn.h"
#include "proxy/list.h"
#include "proxy/login.h"
#include "proxy/pool.h"
#include "proxy/pool_member.h"
#include "proxy/probe.h"
#include "proxy/server_conn.h"
#include "proxy/tls_session.h"
#include "proxy/upstream.h"

namespace pgmux::proxy {

class MetricsService;

class Proxy final : public PoolHost,
                    public ClientHost,
                    public ServerHost,
                    public CancelHost,
                    private ProbeEvents {
 public:
  // REQUIRES: `config` passed config::validate. The loop must outlive the Proxy.
  Proxy(config::Config config, uv_loop_t* loop);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds and listens (port 0 picks a free one), starts the janitor and the
  // warm-up of min_server_connections. Call before running the loop.
  protocol::Status start();
  uint16_t port() const { return port_; }
  // The /metrics, /healthz and /readyz port; 0 without metrics_listen.
  uint16_t metrics_port() const;
  // SIGTERM: shutdown(kWaitForClients); SIGINT: shutdown(kWaitForServers);
  // a second one while draining stops at once; SIGHUP: reload().
  void handle_signals();
  // Runs the event loop until nothing is left in it (after stop()). With
  // busy_poll_us, the loop polls without sleeping for that long after each
  // read before it sleeps in epoll_wait.
  void run();
  // Closes the listener and every connection; the loop then runs dry.
  void stop();

  // ---- Operations (admin console, signals, health) ----
  // PgBouncer's SHUTDOWN variants: kImmediate closes everything now;
  // kWaitForClients stops accepting and lets each client finish its
  // transaction, then ends it with 57P01; kWaitForServers stops accepting
  // and waits for every server to be released. Both waiting modes end after
  // shutdown_timeout at the latest.
  enum class ShutdownMode : uint8_t { kImmediate, kWaitForClients, kWaitForServers };
  void shutdown(ShutdownMode mode);
  // Re-reads the configuration (the same sources as at start) and applies
  // what can change live; on error the old configuration stays.
  protocol::Status reload();
  // Draining after SIGTERM/SIGINT or SHUTDOWN WAIT_*: not accepting.
  bool draining() const { return draining_; }
  // PoolHost: which drain (see ShutdownMode).
  bool draining_clients() const override {
    return draining_ && drain_mode_ == ShutdownMode::kWaitForClients;
  }
  bool holding_servers() const override {
    return draining_ && drain_mode_ == ShutdownMode::kWaitForServers;
  }
  // Where the configuration came from, for reload().
  void set_load_options(config::LoadOptions options) { load_options_ = std::move(options); }
  // The pools, upstreams and clients, for the admin console and /metrics.
  const std::vector<std::unique_ptr<Pool>>& pools() const { return pools_; }
  const std::vector<std::unique_ptr<Upstream>>& upstreams() const { return upstreams_; }
  size_t client_count() const { return client_count_; }
  TimeMs started_at() const { return started_at_; }
  // Every client slot (null where free) and every server, read-only, for
  // SHOW CLIENTS and SHOW SERVERS.
  const std::vector<std::unique_ptr<ClientConn>>& clients() const { return slots_; }
  const std::unordered_map<uint64_t, std::unique_ptr<ServerConn>>& servers() const {
    return servers_;
  }
  size_t logging_in_count() const { return logging_in_.size(); }
  // Whether any pool is paused (PAUSE or KILL, until RESUME).
  bool paused() const;
  // KILL: pauses `pool`, ends its clients with FATAL 57P01 and closes its
  // servers now. The pool stays paused until RESUME.
  void kill(Pool& pool);
  // Admin sessions whose PAUSE or WAIT_CLOSE has not finished; the janitor
  // polls them.
  IntrusiveList<AdminSession, AdminLink>& admin_waiting() { return admin_waiting_; }
  // Thread-safe: asks the loop's thread to stop(). Valid after start().
  void request_stop();

  // ---- For connections ----
  uv_loop_t* loop() override { return loop_; }
  const config::Config& config() const override { return config_; }
  BlockPool& blocks() override { return blocks_; }
  // Scratch space for messages pgmux generates; valid until the next use.
  protocol::Bytes& scratch() override { return scratch_; }
  // What a client's batch becomes when pgmux rewrites part of it.
  protocol::Bytes& assembly() override { return assembly_; }
  TimeMs now() const override { return uv_now(loop_); }
  std::mt19937_64& rng() override { return rng_; }
  uint64_t next_id() { return ++last_id_; }
  bool stopping() const override { return stopping_; }

  Pool* find_pool(std::string_view database) override;
  // PoolHost: a ServerConn for `pool`; a Probe of its upstream (given up
  // after server_connect_timeout).
  void open_server(Pool& pool) override;
  void probe(Pool& pool) override;
  IntrusiveList<ClientConn, LoginLink>& logging_in() override { return logging_in_; }
  // Clients that have not sent a complete startup packet yet (in accept
  // order, so only the head can be late for the startup deadline).
  IntrusiveList<ClientConn, StartupLink>& starting() override { return starting_; }
  // Clients whose password was wrong, waiting out auth_failure_delay.
  IntrusiveList<ClientConn, LoginLink>& auth_failed() override { return auth_failed_; }
  uint64_t count_auth_failure() override { return ++auth_failures_; }
  // TLS towards clients, or nullptr when client_tls is disable.
  const TlsContext* client_tls() const { return client_tls_.get(); }
  const TlsContext& client_tls_context() const override { return *client_tls_; }
  // LoginHost
  bool client_tls_available() const override { return client_tls_ != nullptr; }
  std::string_view client_tls_end_point() const override {
    return client_tls_ != nullptr ? std::string_view(client_tls_->server_end_point())
                                  : std::string_view();
  }
  // The SCRAM secret for a plain password, derived once per user.
  const protocol::ScramSecret& scram_secret_for(const std::string& user,
                                                const std::string& password) override;
  // Secret seed for mock SCRAM exchanges with unknown users.
  const std::string& mock_seed() const override { return mock_seed_; }
  // Random cancel keys for clients; never the server's.
  void register_cancel_key(ClientConn* client) override;
  void forward_cancel(int32_t pid, int32_t secret) override;
  // Sends a CancelRequest for the server key (pid, secret) to `address`,
  // over TLS when `tls` is not nullptr (`host` and `sni` as for
  // Stream::start_tls). Given up after server_connect_timeout.
  void open_cancel(const sockaddr* address, int32_t pid, int32_t secret, const TlsContext* tls,
                   const std::string& host, bool sni);
  size_t cancels_in_flight() const { return cancels_.size(); }

  // A connection's handle has closed (libuv's close callback): the Proxy
  // frees the object. It left its pool and its pairing when it started
  // closing.
  void on_client_freed(ClientConn* client) override;
  void on_server_freed(ServerConn* server) override;
  void on_cancel_freed(CancelConn* cancel) override;
  std::unique_ptr<AdminSession> open_admin(ClientConn& client, AdminRole role) override;

 private:
  // Asks the kernel to hand over client connections once their first bytes
  // are in (TCP_DEFER_ACCEPT).
  void defer_accept();
  static void on_connection(uv_stream_t* listener, int status);
  static void on_janitor(uv_timer_t* timer);
  static void on_signal(uv_signal_t* handle, int signum);
  static void on_async(uv_async_t* handle);
  void accept_client();
  void janitor_tick();
  // ---- Drain and reload (proxy/lifecycle.cpp) ----
  // reload() without the systemd notifications around it.
  protocol::Status apply_reload();
  // Ends a drain when its condition holds or shutdown_timeout has passed.
  void check_drain(TimeMs t);
  // Servers lent for a transaction (a pinned client between transactions
  // does not count).
  size_t busy_servers() const;
  // The Upstream for `endpoint`, made if new.
  Upstream& upstream_for(const std::string& endpoint);
  // The TLS context `database` needs towards its upstream (nullptr with
  // sslmode disable).
  protocol::Result<std::unique_ptr<TlsContext>> upstream_tls_for(const config::Database& database);
  // Ends a stats_period: rolls every pool's period marks, logs the stats lines.
  void end_stats_period(TimeMs t);
  // ProbeEvents
  void on_probe_done(Probe& probe, bool connected) override;
  void on_probe_closed(Probe& probe) override;

  config::Config config_;
  uv_loop_t* loop_;
  BlockPool blocks_;
  static constexpr size_t kCachedBlocksFloor = 16;
  uint64_t janitor_ticks_ = 0;
  std::mt19937_64 rng_;
  uint64_t last_id_ = 0;
  bool stopping_ = false;
  bool draining_ = false;
  ShutdownMode drain_mode_ = ShutdownMode::kImmediate;
  TimeMs drain_deadline_ = 0;
  TimeMs started_at_ = 0;
  TimeMs period_started_at_ = 0;  // The current stats_period's start.
  config::LoadOptions load_options_;
  uint16_t port_ = 0;

  uv_tcp_t listener_{};
  uv_timer_t janitor_{};
  uv_signal_t sigint_{};
  uv_signal_t sigterm_{};
  uv_signal_t sighup_{};
  bool listener_open_ = false;  // Initialised and not closed yet.
  uv_async_t stop_async_{};
  bool started_ = false;
  bool signals_ = false;

  std::vector<std::unique_ptr<Upstream>> upstreams_;
  protocol::Bytes scratch_;
  protocol::Bytes assembly_;
  std::vector<std::unique_ptr<Pool>> pools_;
  // Clients by slot: a vector, not a map, so a connection costs 8 bytes
  // here. A client's cancel key names its slot.
  std::vector<std::unique_ptr<ClientConn>> slots_;
  std::vector<uint32_t> free_slots_;
  size_t client_count_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<ServerConn>> servers_;
  std::unordered_map<uint64_t, std::unique_ptr<CancelConn>> cancels_;
  IntrusiveList<CancelConn, CancelLink> cancel_order_;  // Oldest first.
  struct ProbeEntry {
    std::unique_ptr<Probe> probe;
    Pool* pool;  // Told the result.
    TimeMs started_at;
  };
  std::unordered_map<uint64_t, ProbeEntry> probes_;
  IntrusiveList<ClientConn, LoginLink> logging_in_;
  IntrusiveList<ClientConn, StartupLink> starting_;
  IntrusiveList<ClientConn, LoginLink> auth_failed_;
  IntrusiveList<AdminSession, AdminLink> admin_waiting_;
  uint64_t auth_failures_ = 0;
  std::unique_ptr<TlsContext> client_tls_;
  std::unordered_map<std::string, std::pair<std::string, protocol::ScramSecret>> scram_secrets_;
  std::string mock_seed_;
  std::unique_ptr<MetricsService> metrics_;  // With metrics_listen only.
};

}  // namespace pgmux::proxy
