// The login handshake with an upstream server, sans-I/O (PostgreSQL docs
// 55.2.1 "Start-up", 55.2.10 "SSL Session Encryption", 55.3 "SASL
// Authentication"): what pgmux sends first, the answer to an SSLRequest, and
// every message up to ReadyForQuery. It answers cleartext, MD5 and
// SCRAM-SHA-256 requests, collects ParameterStatus and BackendKeyData, and
// classifies a login ErrorResponse: "no capacity right now" (53300, 57P03,
// Supavisor's refusals, see protocol/refusal.h) versus a real rejection.
//
// It never touches a socket, a pool or the log: the caller frames the input,
// writes what is appended to its buffer, and acts on the returned
// ServerLoginOutcome. ServerConn holds one only while its server logs in.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include "config/config.h"
#include "protocol/auth.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/result.h"
#include "proxy/pool_member.h"

namespace pgmux::proxy {

// What the caller does next.
enum class ServerLoginNext : uint8_t {
  kContinue,      // Write what was appended (maybe nothing); wait for more.
  kStartTls,      // The upstream accepted the SSLRequest: start the TLS handshake.
  kLoggedIn,      // ReadyForQuery: take the parameters and the key; the server is idle.
  kFailed,        // The login failed: `error` and `kind` say how. Close the connection.
  kRetryWithTls,  // sslmode=allow: the upstream refused a plaintext login
                  // (`error` is its refusal, for the log). The pool should ask
                  // for TLS from now on, and this connection closes.
};

struct ServerLoginOutcome {
  ServerLoginNext next = ServerLoginNext::kContinue;
  // kFailed and kRetryWithTls only: what went wrong, and (kFailed) which
  // kind of failure it is, which decides what waiting clients see.
  protocol::Error error;
  LoginFailure kind = LoginFailure::kRejected;
};

class ServerLogin {
 public:
  // `pool_name` names the database in messages. `has_tls_context`: the pool
  // can speak TLS to the upstream (needed to retry a refused plaintext login
  // under sslmode=allow).
  // REQUIRES: `upstream` and `pool_name` outlive this object.
  ServerLogin(const config::Upstream& upstream, std::string_view pool_name, bool has_tls_context);
  ServerLogin(const ServerLogin&) = delete;
  ServerLogin& operator=(const ServerLogin&) = delete;

  // Appends an SSLRequest; its one-byte answer goes to handle_tls_answer.
  void append_ssl_request(protocol::Bytes& out);
  // Appends the StartupMessage: user, database and application_name (if set).
  void append_startup(protocol::Bytes& out) const;

  // The answer to the SSLRequest: 'S' -> kStartTls, unless `more_bytes`
  // followed it before the handshake (they were not encrypted, a man in the
  // middle could have injected them: CVE-2021-23222; 08P01). 'N' -> the
  // StartupMessage is appended and kContinue under sslmode prefer or allow,
  // else 08001. Anything else is 08P01. Failures here are kRejected.
  ServerLoginOutcome handle_tls_answer(char answer, bool more_bytes, protocol::Bytes& out);

  // One whole login message (header included) of the given type. A reply,
  // if any, is appended to `out` (only with kContinue).
  ServerLoginOutcome handle_message(char type, protocol::ByteView message, protocol::Bytes& out);

  // Whether an SSLRequest went first (whatever the answer).
  bool asked_for_tls() const { return asked_for_tls_; }
  // From BackendKeyData; 0 until it arrived.
  int32_t backend_pid() const { return backend_pid_; }
  int32_t backend_secret() const { return backend_secret_; }
  // ParameterStatus in order of arrival, a repeated name updated in place.
  const ParameterList& parameters() const { return params_; }
  ParameterList take_parameters() { return std::move(params_); }

 private:
  ServerLoginOutcome handle_authentication(protocol::ByteView message, protocol::Bytes& out);
  ServerLoginOutcome handle_error(protocol::ByteView message) const;

  const config::Upstream& upstream_;
  std::string_view pool_name_;
  bool has_tls_context_;
  bool asked_for_tls_ = false;
  int32_t backend_pid_ = 0;
  int32_t backend_secret_ = 0;
  ParameterList params_;
  std::unique_ptr<protocol::ScramClient> scram_;  // From AuthenticationSASL to SASLFinal.
};

}  // namespace pgmux::proxy
