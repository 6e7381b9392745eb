// One upstream server connection and its state machine:
//
//   kResolving -> kConnecting [-> kTlsNegotiating -> kTlsHandshake] -> kLoggingIn
//     -> kInPool -> kClosing (any state; then freed by the host in on_closed)
//
// In the pool, the Pool's list (pool_list) is the one truth about where the
// server is: kIdle <-> kActive (lent to a client, its Link paired), and
// kIdle <-> kChecking (a Sync round trip before reuse after
// server_check_delay).
//
// Login: a ServerLogin (proxy/server_login.h) decides what to send and what
// each answer means (StartupMessage; cleartext, MD5 and SCRAM-SHA-256;
// ParameterStatus and BackendKeyData; a login ErrorResponse classified as
// "no capacity right now" versus a real failure); ServerConn frames the input,
// writes, and tells the pool. ReadyForQuery ends it, and the ServerLogin is
// freed.
//
// Active: the server's Link (proxy/link.h) relays between it and its client
// and decides when it goes back to the pool; ServerConn hands it the
// readable and write-done events and exposes its Stream, statements and
// session settings (LinkServer).
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/result.h"
#include "proxy/budget.h"
#include "proxy/link.h"
#include "proxy/list.h"
#include "proxy/pool_member.h"
#include "proxy/session_params.h"
#include "proxy/statements.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

class Pool;
class ClientConn;
class ServerConn;
class ServerLogin;

// What a ServerConn needs of the process it runs in. The Proxy implements it.
class ServerHost {
 public:
  virtual uv_loop_t* loop() = 0;
  virtual BlockPool& blocks() = 0;
  virtual const config::Config& config() const = 0;
  virtual TimeMs now() const = 0;
  virtual std::mt19937_64& rng() = 0;
  // Scratch shared by every Link on the loop for assembling a batch.
  virtual protocol::Bytes& assembly() = 0;
  // The server's handle has closed: the host frees it.
  virtual void on_server_freed(ServerConn* server) = 0;

 protected:
  ~ServerHost() = default;
};

class ServerConn final : public PooledServer, public LinkServer, private StreamEvents {
 public:
  enum class State {
    kResolving,
    kConnecting,
    kTlsNegotiating,  // SSLRequest sent; waiting for 'S' or 'N'.
    kTlsHandshake,
    kLoggingIn,
    kInPool,  // Logged in: idle, checking or active, as pool_list says.
    kClosing,
  };

  ServerConn(ServerHost& host, Pool& pool, uint64_t id);
  ~ServerConn();
  ServerConn(const ServerConn&) = delete;
  ServerConn& operator=(const ServerConn&) = delete;

  uint64_t id() const { return id_; }
  State state() const { return state_; }
  Pool& pool() { return pool_; }
  const std::string& tag() const override { return tag_; }
  TimeMs opened_at() const override { return opened_at_; }
  TimeMs idle_since() const override { return idle_since_; }
  // When the server is due for recycling (server_lifetime minus jitter).
  TimeMs expires_at() const override { return expires_at_; }
  int32_t backend_pid() const { return backend_pid_; }
  int32_t backend_secret() const { return backend_secret_; }
  const sockaddr_storage& peer_address() const { return peer_; }
  const ParameterList& parameters() const override { return params_; }

  // Starts resolving and connecting. REQUIRES: state kResolving, fresh.
  void start();

  // ---- Pooling (called by Pool) ----
  // Whether an idle server may be handed out: its stream is open and the
  // kernel holds nothing from it (no FATAL, EOF or reset the loop has not
  // read yet; an idle backend has nothing to say). One non-blocking peek.
  bool seems_alive() override;
  // Sends a Sync to an idle server; the pool hears back through
  // Pool::on_server_checked, or the server closes.
  void start_check() override;
  TimeMs checking_since() const override { return checking_since_; }
  // Sends the budget survey query; Pool::on_survey or on_survey_failed
  // hears the answer.
  void start_survey() override;
  // REQUIRES: `client` is a ClientConn. Begins the Link.
  void attach(PooledClient* client) override;
  void detach() override;  // Ends the Link; back to kIdle.
  PooledClient* pooled_client() const override;

  // ---- LinkServer (called by the Link) ----
  Stream& stream() override { return stream_; }
  ServerStatements& statements() override { return statements_; }
  ParamOverrides& overrides() override { return overrides_; }
  void release() override;  // Pool::release.
  // The pairing with the attached client (inactive while idle).
  Link& link() { return link_; }

  void close(const char* reason) override;

 private:
  // StreamEvents
  void on_readable(Stream& stream) override;
  void on_eof(Stream& stream, int status) override;
  void on_lent_write_done(Stream& lender) override;
  void on_closed(Stream& stream) override;
  void on_tls_ready(Stream& stream) override;

  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* result);
  static void on_connected(uv_connect_t* req, int status);
  void connect_to(const sockaddr* address);
  void send_startup();
  void process_tls_answer();
  void process_login();
  // Handles one whole login message; returns false if the login is over
  // (logged in, or the server was closed).
  bool handle_login_message(char type, protocol::ByteView message);
  void on_logged_in();
  void login_failed(const protocol::Error& error, LoginFailure kind);
  // Frames the next message of the input while the server is in the pool:
  // true when it is all there; false when more bytes are needed, or when
  // the frame is invalid or larger than the input can hold, which closes
  // the server with `why_invalid`.
  bool next_whole_frame(protocol::ByteView& bytes, protocol::Frame& frame, const char* why_invalid);
  void process_idle();
  void process_check();
  void process_survey();

  ServerHost& host_;
  Pool& pool_;
  uint64_t id_;
  std::string tag_;
  State state_ = State::kResolving;
  Stream stream_;
  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  bool resolve_pending_ = false;
  bool stream_closed_ = false;
  sockaddr_storage peer_{};

  uint64_t opened_at_ = 0;
  uint64_t idle_since_ = 0;
  uint64_t checking_since_ = 0;
  // The survey's answer so far (from its DataRow, or its error).
  std::optional<BudgetSurvey> survey_;
  std::string survey_error_;
  uint64_t expires_at_ = 0;
  int32_t backend_pid_ = 0;
  int32_t backend_secret_ = 0;
  std::vector<std::pair<std::string, std::string>> params_;
  // From connect to ReadyForQuery.
  std::unique_ptr<ServerLogin> login_;

  ServerStatements statements_;
  ParamOverrides overrides_;  // This server's session, relative to the pool's baseline.
  protocol::Bytes scratch_;   // Generated messages, reused.
  Link link_;
};

}  // namespace pgmux::proxy
