// The login of one client, sans I/O: the startup packet (SSLRequest,
// GSSENCRequest, CancelRequest, StartupMessage), the checks that refuse a
// client before any password (client_tls = require, the database, the user,
// allowed_cidrs), the password exchange (SCRAM-SHA-256 with channel binding
// over TLS, MD5, cleartext, trust) and, at the welcome, the client's startup
// settings. It reads the client's input buffer, appends its answers to a
// buffer the caller writes, and returns what the caller does next. It never
// touches a socket or a connection list and leaves logging to the caller, so
// proxy/login_test.cpp drives it with a fake LoginHost.
//
// ClientConn owns one from accept to the welcome, then frees it: an idle
// client keeps none of this.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/config.h"
#include "protocol/messages.h"
#include "protocol/result.h"
#include "protocol/scram_server.h"
#include "proxy/buffer.h"
#include "proxy/pool_member.h"
#include "proxy/session_params.h"

namespace pgmux::proxy {

class Pool;

// What a Login needs from the process it runs in. The Proxy implements it.
class LoginHost {
 public:
  virtual const config::Config& config() const = 0;
  virtual TimeMs now() const = 0;
  // The pool clients reach by naming `database`, or nullptr.
  virtual Pool* find_pool(std::string_view database) = 0;
  // Whether pgmux has a certificate for clients: an SSLRequest gets 'S'.
  virtual bool client_tls_available() const = 0;
  // The tls-server-end-point hash of that certificate (RFC 5929), for
  // SCRAM-SHA-256-PLUS; empty without one.
  virtual std::string_view client_tls_end_point() const = 0;
  // The SCRAM secret for a plain password (derived once per user: a cache).
  virtual const protocol::ScramSecret& scram_secret_for(const std::string& user,
                                                        const std::string& password) = 0;
  // The per-process seed of the mock SCRAM secrets of unknown users.
  virtual const std::string& mock_seed() const = 0;

 protected:
  ~LoginHost() = default;
};

// The admin console's virtual databases (PgBouncer's name and pgmux's).
// A configured database of the same name takes precedence.
inline bool is_admin_database(std::string_view name) {
  return name == "pgbouncer" || name == "pgmux";
}

// What a client of the admin console may do: admin_users everything,
// stats_users the SHOW commands only.
enum class AdminRole : uint8_t { kNone, kStats, kAdmin };
AdminRole admin_role_of(const config::Config& config, std::string_view user);

// What the caller does once it has written what feed() appended.
enum class LoginNext : uint8_t {
  kNeedMore,        // Read more, then feed again.
  kStartTls,        // 'S' was appended: start the TLS handshake, then feed again.
  kCancel,          // A CancelRequest: forward the key, then close.
  kWelcome,         // Logged in: ask pool() for the welcome.
  kAdmin,           // Logged in to the admin console as admin_role(): no pool.
  kFail,            // FATAL `error` (with `hint`), then close.
  kFailAfterDelay,  // Park the client; after auth_failure_delay, FATAL delayed_failure().
};

// What went wrong, for the caller's log. The client hears only `error`, or
// for the last three delayed_failure(), the same words for all three.
enum class LoginFault : uint8_t {
  kNone,
  kProtocol,         // Malformed or unexpected input.
  kNoUser,           // The StartupMessage names no user.
  kTlsRequired,      // Plaintext under client_tls = require.
  kUnknownDatabase,  // No pool serves the database.
  kAddressRefused,   // The peer's address is outside allowed_cidrs.
  kUserNotAllowed,   // auth_type = trust and pgmux does not know the user.
  kWrongPassword,    // Cleartext or MD5 response did not match.
  kWrongProof,       // The SCRAM proof did not match.
  kUnknownUser,      // Not a user pgmux knows.
  kNotAdmin,         // The admin database, by a user in neither admin_users nor stats_users.
};
std::string_view to_string(LoginFault fault);

struct LoginOutcome {
  LoginNext next = LoginNext::kNeedMore;
  LoginFault fault = LoginFault::kNone;  // kFail and kFailAfterDelay.
  protocol::Error error;                 // kFail: the FATAL's SQLSTATE and message.
  std::string hint;                      // kFail: its hint, often empty.
  int32_t cancel_pid = 0;                // kCancel: the key the client sent.
  int32_t cancel_secret = 0;
};

class Login {
 public:
  // `peer` is the client's address, nullptr if unknown (then allowed_cidrs
  // refuses it). `host` must outlive the Login.
  Login(LoginHost& host, TimeMs accepted_at, const sockaddr* peer);
  Login(const Login&) = delete;
  Login& operator=(const Login&) = delete;

  // Handles every complete packet or message at the front of `in`,
  // consuming each, and appends the answers (in order) to `out`; the caller
  // writes `out` before it acts on the outcome. Stops at the first outcome
  // other than kNeedMore. REQUIRES: every earlier outcome was kNeedMore or
  // kStartTls; in.pending() is empty.
  LoginOutcome feed(Buffer& in, protocol::Bytes& out);

  // The StartupMessage has been read (the startup deadline no longer applies).
  bool startup_complete() const { return step_ != Step::kStartup; }
  // An authentication request was sent and the answer is awaited.
  bool authenticating() const { return step_ != Step::kStartup && step_ != Step::kDone; }
  // The pool of the database the client named, once found (also when a
  // later check refuses the client).
  Pool* pool() const { return pool_; }
  const std::string& user() const { return user_; }
  // Not kNone when the client named the admin database (and may use it).
  AdminRole admin_role() const { return admin_role_; }
  // "address:port", empty if unknown.
  const std::string& peer() const { return peer_; }
  TimeMs accepted_at() const { return accepted_at_; }
  // When feed() returned kFailAfterDelay.
  TimeMs auth_failed_at() const { return auth_failed_at_; }
  // After kFailAfterDelay: FATAL 28P01, the same for every user.
  protocol::Error delayed_failure() const;

  // At the welcome: moves the startup packet's settings (its parameters and
  // the -c settings in `options`) into `overrides` where they differ from
  // `pool`'s baseline. `warnings` gets a line for each option and name pgmux
  // ignores. REQUIRES: feed() returned kWelcome; called once.
  void take_settings(const Pool& pool, ParamOverrides& overrides,
                     std::vector<std::string>& warnings);

 private:
  enum class Step : uint8_t { kStartup, kSaslInitial, kSaslFinal, kMd5, kCleartext, kDone };

  LoginOutcome read_startup(Buffer& in, protocol::Bytes& out);
  LoginOutcome start_session(std::string_view user, std::string_view database,
                             protocol::Bytes& out);
  // Who may log in and how: the configured users, or with none, `upstream`'s
  // own user (null when no database's upstream user is `user_`).
  LoginOutcome check_user(std::string_view database, const config::Upstream* upstream,
                          protocol::Bytes& out);
  void begin_authentication(protocol::Bytes& out);
  LoginOutcome read_auth(Buffer& in, protocol::Bytes& out);
  LoginOutcome handle_auth_message(protocol::ByteView message, protocol::Bytes& out);
  LoginOutcome authenticated();
  LoginOutcome authentication_failed(LoginFault fault);

  LoginHost& host_;
  Step step_ = Step::kStartup;
  bool tls_ = false;  // 'S' was sent: the rest is over TLS.
  bool known_user_ = false;
  std::array<uint8_t, 4> md5_salt_{};
  Pool* pool_ = nullptr;
  AdminRole admin_role_ = AdminRole::kNone;
  TimeMs accepted_at_;
  TimeMs auth_failed_at_ = 0;
  protocol::Credential credential_;
  std::unique_ptr<protocol::ScramServer> scram_;
  // The startup packet's parameters, until the welcome turns them into
  // overrides (the pool's baseline is known by then).
  std::vector<std::pair<std::string, std::string>> startup_params_;
  std::string peer_;  // "address:port"
  std::string user_;
  sockaddr_storage peer_address_{};
};

}  // namespace pgmux::proxy
