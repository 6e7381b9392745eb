// One upstream server connection and its state machine:
//
//   kResolving -> kConnecting [-> kTlsNegotiating -> kTlsHandshake] -> kLoggingIn
//     -> kIdle <-> kActive
//        any state -> kClosing (then freed by the Proxy in on_closed)
//
// Login: StartupMessage; answers cleartext, MD5 and SCRAM-SHA-256 requests;
// records ParameterStatus and BackendKeyData; ReadyForQuery ends it. A login
// ErrorResponse is classified: "no capacity right now" (53300, or Supabase's
// Supavisor refusals sent as XX000) versus a real failure.
//
// Active: messages from the server are forwarded to the attached client
// whole slices at a time, deciding from headers only. ReadyForQuery is
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
#include "protocol/result.h"
#include "proxy/list.h"
#include "proxy/stream.h"

namespace pgmux::proxy {

class Proxy;
class Pool;
class ClientConn;

// Why a server's connect or login failed, which decides what waiting
// clients see.
enum class LoginFailure {
  kNoCapacity,   // The upstream is full (53300, Supavisor refusals): retry, clients wait.
  kUnreachable,  // Resolve, connect or the connection failed: retry, clients wait.
  kRejected,     // The upstream refused pgmux (password, TLS, database): clients are told.
};

// Which of its pool's lists a server is on; managed by Pool only.
enum class PoolList : uint8_t { kNone, kOpening, kIdle, kActive };

class ServerConn final : public PoolLink, private StreamEvents {
 public:
  PoolList pool_list = PoolList::kNone;

  enum class State {
    kResolving,
    kConnecting,
    kTlsNegotiating,  // SSLRequest sent; waiting for 'S' or 'N'.
    kTlsHandshake,
    kLoggingIn,
    kIdle,
    kActive,
    kClosing,
  };

  ServerConn(Proxy& proxy, Pool& pool, uint64_t id);
  ServerConn(const ServerConn&) = delete;
  ServerConn& operator=(const ServerConn&) = delete;

  uint64_t id() const { return id_; }
  State state() const { return state_; }
  Pool& pool() { return pool_; }
  const std::string& tag() const { return tag_; }
  uint64_t opened_at() const { return opened_at_; }
  uint64_t idle_since() const { return idle_since_; }
  // When the server is due for recycling (server_lifetime minus jitter).
  uint64_t expires_at() const { return expires_at_; }
  int32_t backend_pid() const { return backend_pid_; }
  int32_t backend_secret() const { return backend_secret_; }
  const sockaddr_storage& peer_address() const { return peer_; }
  const std::vector<std::pair<std::string, std::string>>& parameters() const { return params_; }

  // Starts resolving and connecting. REQUIRES: state kResolving, fresh.
  void start();

  // ---- Pooling (called by Pool) ----
  void attach(ClientConn* client);
  void detach();  // Back to kIdle.
  ClientConn* client() const { return client_; }
  // True when the server can serve another client: the last ReadyForQuery
  // said idle, no request is unanswered and nothing unsynced was sent.
  bool clean() const { return outstanding_ == 0 && !unsynced_ && tx_status_ == 'I'; }

  // ---- Relay (called by the attached ClientConn) ----
  Stream& stream() { return stream_; }
  // The client forwarded a message of this type.
  void note_client_message(char type);
  // The client went away while attached. A server that holds session state
  // (`reusable` false: its client was pinned) is closed, never reused.
  void on_client_gone(bool reusable);

  void close(const char* reason);

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
  void process_active();
  void flush_to_client();
  void maybe_release();

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
  sockaddr_storage peer_{};

  uint64_t opened_at_ = 0;
  uint64_t idle_since_ = 0;
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
};

}  // namespace pgmux::proxy
