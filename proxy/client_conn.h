// One client connection and its state machine:
//
//   kStartup -> kAuthenticating -> kWaitingForWelcome -> kIdle <-> kWaitingForServer
//            \-> kAuthFailed (FATAL 28P01 after a delay)         -> kActive
//            \-> kAdmin (the admin console: its AdminSession reads the input)
//                                       ^                              |
//                                       +------------------------------+
//   any state -> kClosing (then freed by the Proxy in on_closed)
//
// kStartup and kAuthenticating feed the client's bytes to its Login
// (proxy/login.h), which reads the startup packet and runs the password
// exchange; the ClientConn writes its answers, starts TLS, forwards a
// CancelRequest and asks the pool for the welcome.
// kIdle holds no server; the first message
// of the next transaction queues the client in its pool. kActive forwards the
// client's messages to its server, whole slices at a time, deciding from the
// 5-byte header alone; Terminate is never forwarded.
//
// A request that cannot be served (the queue deadline passed, or the
// upstream rejected pgmux) gets an ERROR; the client's pending messages up to
// the end of that request (Query, or Sync for the extended protocol) are
// discarded and a ReadyForQuery follows, so the connection stays usable.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/result.h"
#include "proxy/link.h"
#include "proxy/list.h"
#include "proxy/login.h"
#include "proxy/pool_member.h"
#include "proxy/session_params.h"
#include "proxy/statements.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

class AdminSession;
class ClientConn;

// What a ClientConn needs of the process it runs in, besides what its Login
// needs: the loop and buffers, TLS, cancel keys, the login lists the
// janitor watches, and being freed. The Proxy implements it.
class ClientHost : public LoginHost {
 public:
  virtual uv_loop_t* loop() = 0;
  virtual BlockPool& blocks() = 0;
  // Scratch space for messages pgmux generates; valid until the next use.
  virtual protocol::Bytes& scratch() = 0;
  // TLS towards clients. REQUIRES: client_tls_available().
  virtual const TlsContext& client_tls_context() const = 0;
  // A random cancel key for `client` (never the server's).
  virtual void register_cancel_key(ClientConn* client) = 0;
  // A client's CancelRequest: cancels whatever the client with that key runs.
  virtual void forward_cancel(int32_t pid, int32_t secret) = 0;
  // Clients logging in (client_login_timeout), those without a complete
  // startup packet yet (the startup deadline), and those waiting out
  // auth_failure_delay; the janitor checks their heads.
  virtual IntrusiveList<ClientConn, LoginLink>& logging_in() = 0;
  virtual IntrusiveList<ClientConn, StartupLink>& starting() = 0;
  virtual IntrusiveList<ClientConn, LoginLink>& auth_failed() = 0;
  virtual uint64_t count_auth_failure() = 0;
  // The client's handle has closed: the host frees it.
  virtual void on_client_freed(ClientConn* client) = 0;
  // The admin console's session for a client that logged in to it.
  virtual std::unique_ptr<AdminSession> open_admin(ClientConn& client, AdminRole role) = 0;

 protected:
  ~ClientHost() = default;
};
class Pool;
class ServerConn;

class ClientConn final : public PooledClient,
                         public LinkClient,
                         public LoginLink,
                         public StartupLink,
                         private StreamEvents {
 public:
  enum class State {
    kStartup,
    kAuthenticating,  // Exchanging password messages.
    kAuthFailed,      // Waiting out auth_failure_delay before FATAL 28P01.
    kWaitingForWelcome,
    kIdle,
    kWaitingForServer,
    kActive,
    kAdmin,  // Logged in to the admin console; no pool.
    kClosing,
  };

  ClientConn(ClientHost& host, uint64_t id, uint32_t slot);
  ~ClientConn();
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  uint64_t id() const { return id_; }
  uint32_t slot() const { return slot_; }  // In the Proxy's registry.
  State state() const { return state_; }
  const std::string& tag() const override { return tag_; }
  // What the tag ("C-17 app/alice@10.0.0.5:51234") names once the database
  // is known, for the admin console's SHOW CLIENTS (the tag holds them, so
  // an idle client keeps no copies); empty before.
  std::string_view database_name() const;
  std::string_view user_name() const;
  std::string_view peer_name() const;  // "address:port"
  TimeMs connected_at() const { return connected_at_; }
  AdminSession* admin() const { return admin_.get(); }
  Stream& stream() override { return stream_; }
  Pool* pool() const { return pool_; }
  ServerConn* server() const { return server_; }
  // While logging in only (0 afterwards).
  uint64_t accepted_at() const { return login_ ? login_->accepted_at() : 0; }
  int32_t cancel_pid() const { return cancel_pid_; }
  int32_t cancel_secret() const { return cancel_secret_; }
  uint64_t auth_failed_at() const { return login_ ? login_->auth_failed_at() : 0; }
  // After the delay: FATAL 28P01, the same for every failure.
  void report_auth_failure();
  void set_cancel_key(int32_t pid, int32_t secret) {
    cancel_pid_ = pid;
    cancel_secret_ = secret;
  }

  // After accept: reads the startup packet.
  void start();

  // ---- Called by Pool ----
  // Sends AuthenticationOk, the pool's ParameterStatus set, BackendKeyData
  // and ReadyForQuery.
  void welcome(const ParameterList& params) override;
  // REQUIRES: `pooled` is a ServerConn.
  void attach(PooledServer* pooled) override;
  void on_server_released() override;
  // The current request gets an ERROR; the connection stays usable.
  void fail_request(std::string_view code, std::string_view message,
                    std::string_view hint) override;
  // FATAL, then the connection closes. During the TLS handshake there is no
  // channel to send it on: the connection closes without a word (the reason
  // is logged).
  void fail(std::string_view code, std::string_view message, std::string_view hint = {}) override;

  // ---- LinkClient (called by the Link with the attached server) ----
  void on_server_lost() override;
  ClientStatements* statements(bool create) override;
  // Session parameters this client differs from a fresh server by.
  ParamOverrides& overrides() override { return overrides_; }

  // Closes at once, dropping unsent output; `reason` goes to the log (at
  // debug level: the caller logs a notable close itself).
  void close(std::string_view reason) override;

 private:
  void shut(bool after_writes);
  void finish_discard();
  // Answers a Parse/Close-only request for known statements without a
  // server; false if the request needs one.
  bool answer_without_server();
  // StreamEvents
  void on_readable(Stream& stream) override;
  void on_eof(Stream& stream, int status) override;
  void on_lent_write_done(Stream& lender) override;
  void on_closed(Stream& stream) override;

  void process();
  // kStartup, kAuthenticating: feeds the Login and acts on its outcome.
  void process_login();
  void process_idle();
  void authentication_failed(LoginFault fault);
  void finish_login();
  void start_admin(AdminRole role);

  ClientHost& host_;
  uint64_t id_;
  uint32_t slot_;
  std::string tag_;
  State state_ = State::kStartup;
  Stream stream_;
  Pool* pool_ = nullptr;
  ServerConn* server_ = nullptr;
  int32_t cancel_pid_ = 0;
  int32_t cancel_secret_ = 0;
  TimeMs connected_at_ = 0;

  uint64_t discard_left_ = 0;          // Bytes of a message being discarded.
  bool discarding_ = false;            // Skipping the rest of a failed request.
  bool discard_ends_request_ = false;  // The message being discarded is a Query/Sync.

  // What only a client that is logging in needs, freed at the welcome so
  // that an idle client stays small. Made by start().
  std::unique_ptr<Login> login_;
  // The admin console's session (state kAdmin only).
  std::unique_ptr<AdminSession> admin_;
  // Named prepared statements, made on the first named Parse.
  std::unique_ptr<ClientStatements> statements_;
  ParamOverrides overrides_;
};

}  // namespace pgmux::proxy
