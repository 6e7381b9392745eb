// One upstream server connection and its state machine:
//
//   kResolving -> kConnecting [-> kTlsNegotiating -> kTlsHandshake] -> kLoggingIn
//     -> kIdle <-> kActive
//        kIdle <-> kChecking (a Sync round trip before reuse after server_check_delay)
//        any state -> kClosing (then freed by the Proxy in on_closed)
//
// Login: StartupMessage; answers cleartext, MD5 and SCRAM-SHA-256 requests;
// records ParameterStatus and BackendKeyData; ReadyForQuery ends it. A login
// ErrorResponse is classified: "no capacity right now" (53300, or Supabase's
// Supavisor refusals sent as XX000) versus a real failure.
//
// Active: messages from the server are forwarded to the attached client
// whole slices at a time, deciding from headers only. The PendingQueue says
// which request each response answers: responses to what pgmux sent on its
// own (a Parse of a virtual statement, a Close to make room, the SET that
// brings the session in line) are swallowed, and answers pgmux gives for the
// server (ParseComplete, CloseComplete) are slotted in at their place.
// ParameterStatus is recorded for the session tracking. ReadyForQuery is
// inspected: when it says idle ('I'), every request the client sent has been
// answered and nothing unsynced was sent, the server goes back to the pool as
// soon as the bytes have reached the client's socket.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "protocol/auth.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/result.h"
#include "proxy/list.h"
#include "proxy/relay.h"
#include "proxy/pending.h"
#include "proxy/pool_member.h"
#include "proxy/session_params.h"
#include "proxy/statements.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

class Proxy;
class Pool;
class ClientConn;

class ServerConn final : public PooledServer, private StreamEvents {
 public:
  enum class State {
    kResolving,
    kConnecting,
    kTlsNegotiating,  // SSLRequest sent; waiting for 'S' or 'N'.
    kTlsHandshake,
    kLoggingIn,
    kIdle,
    kChecking,  // A Sync was sent to prove the idle backend alive; its ReadyForQuery is due.
    kActive,
    kClosing,
  };

  ServerConn(Proxy& proxy, Pool& pool, uint64_t id);
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
  // REQUIRES: `client` is a ClientConn.
  void attach(PooledClient* client) override;
  void detach() override;  // Back to kIdle.
  ClientConn* client() const { return client_; }
  PooledClient* pooled_client() const override;
  // True when the server can serve another client: the last ReadyForQuery
  // said idle, no request is unanswered and nothing unsynced was sent.
  bool clean() const {
    return outstanding_ == 0 && !unsynced_ && tx_status_ == 'I' && pending_.empty();
  }

  // ---- Relay (called by the attached ClientConn) ----
  Stream& stream() { return stream_; }
  // The client forwarded a message of this type.
  void note_client_message(char type);
  // Releases the server if its last ReadyForQuery said it may go and both
  // directions are now at a message boundary.
  void maybe_release();
  // A request whose responses need more than forwarding (see Pending).
  // kFake entries are answered as soon as every earlier response is out.
  void expect(const Pending& entry);
  // Statements prepared on this server.
  ServerStatements& statements() { return statements_; }
  // Session parameters this server differs from a fresh one by.
  const ParamOverrides& overrides() const { return overrides_; }
  // The client ran SET (sql = value as written) or RESET of a parameter
  // PostgreSQL does not report. `exact`: the request is a simple Query of
  // SET/RESET statements only, sent with nothing else in flight outside a
  // transaction block, so it takes effect exactly when it succeeds: recorded
  // on both sides at the next ReadyForQuery unless an error came first.
  // Otherwise a transaction or savepoint may still undo it (or SET LOCAL-like
  // effects may be mixed in): once the server is idle with nothing in flight,
  // pgmux reads the settings back from the server and records what it says.
  void note_untracked_set(std::string_view name, std::string_view value, bool reset, bool exact);
  void note_reset_all(bool exact);
  // Nothing is in flight and no transaction block is open: a Query sent now
  // runs in its own implicit transaction.
  bool between_transactions() const { return clean(); }
  // Sends `sql` (the session sync) ahead of the client's first message;
  // its responses are swallowed. The server then has the client's settings.
  void send_session_sync(const std::string& sql, const ParamOverrides& client);
  // The client went away while attached. A server that holds session state
  // (`reusable` false: its client was pinned) is closed, never reused.
  void on_client_gone(bool reusable);

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
  // Handles one whole login message; returns false if the server was closed.
  bool handle_login_message(char type, protocol::ByteView message);
  void login_failed(const protocol::Error& error, LoginFailure kind);
  void process_idle();
  void process_check();
  void process_active();
  void flush_to_client();
  // The server answered the head request with CopyInResponse.
  void on_copy_in();
  // Every decided byte goes to the client; false (and reading stops) while
  // that write is in flight.
  bool drain_to_client();
  // Handles one response message by the head of pending_.
  Step on_response(const protocol::Frame& frame, protocol::ByteView bytes);
  // Drops the entries the server skipped after an error, up to the next
  // Sync (55.2.3), undoing what they would have done.
  void skip_to_sync();
  void undo(const Pending& entry);
  void finish(const Pending& entry);
  // Sends the answers pgmux gives for the server that are now due.
  void answer_fakes();
  void on_parameter_status(protocol::ByteView message);
  void apply_untracked_sets();
  // Sends the query that reads back the settings noted since the last
  // ReadyForQuery that settled them; its rows arrive in on_settings_row.
  void read_back_settings();
  void on_settings_row(protocol::ByteView message);

  Proxy& proxy_;
  Pool& pool_;
  uint64_t id_;
  std::string tag_;
  State state_ = State::kResolving;
  Stream stream_;
  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  bool resolve_pending_ = false;
  bool stream_closed_ = false;
  bool asked_for_tls_ = false;  // An SSLRequest went first (whatever the answer).
  sockaddr_storage peer_{};

  uint64_t opened_at_ = 0;
  uint64_t idle_since_ = 0;
  uint64_t checking_since_ = 0;
  uint64_t expires_at_ = 0;
  int32_t backend_pid_ = 0;
  int32_t backend_secret_ = 0;
  std::vector<std::pair<std::string, std::string>> params_;
  std::unique_ptr<protocol::ScramClient> scram_;

  // Relay state.
  ClientConn* client_ = nullptr;
  uint32_t outstanding_ = 0;   // Query/Sync/FunctionCall sent, ReadyForQuery not yet seen.
  bool unsynced_ = false;      // A message that needs a later Sync was sent.
  char tx_status_ = 'I';       // From the last ReadyForQuery.
  uint64_t message_left_ = 0;  // Bytes of a message being streamed through.
  bool release_after_flush_ = false;
  // Copy-in mode (CopyInResponse seen; the client's CopyDone or CopyFail,
  // or an error, not yet): the server ignores Sync and Flush.
  bool copy_in_ = false;
  PendingQueue pending_;
  ServerStatements statements_;
  ParamOverrides overrides_;
  // SET/RESET of unreported parameters awaiting the ReadyForQuery that
  // confirms them; reset_all_ for RESET ALL / DISCARD ALL.
  std::vector<ParamValue> untracked_sets_;  // Empty value with sql=false: RESET.
  bool untracked_reset_all_ = false;
  bool settings_unsure_ = false;  // Some untracked change needs the read-back.
  bool error_since_ready_ = false;
  protocol::Bytes scratch_;  // Generated messages, reused.
};

}  // namespace pgmux::proxy
