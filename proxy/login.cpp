#include "proxy/login.h"

#include <netinet/in.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "protocol/auth_messages.h"
#include "protocol/crypto.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/sqlstate.h"
#include "proxy/log.h"
#include "proxy/pool.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;
using protocol::FrameStatus;

namespace {

LoginOutcome failure(LoginFault fault, std::string_view code, std::string message,
                     std::string hint = {}) {
  LoginOutcome outcome;
  outcome.next = LoginNext::kFail;
  outcome.fault = fault;
  outcome.error = protocol::Error{std::string(code), std::move(message)};
  outcome.hint = std::move(hint);
  return outcome;
}

LoginOutcome failure(LoginFault fault, const protocol::Error& error) {
  return failure(fault, error.sqlstate, error.message);
}

LoginOutcome next(LoginNext what) {
  LoginOutcome outcome;
  outcome.next = what;
  return outcome;
}

}  // namespace

std::string_view to_string(LoginFault fault) {
  switch (fault) {
    case LoginFault::kNone:
      return "none";
    case LoginFault::kProtocol:
      return "protocol violation";
    case LoginFault::kNoUser:
      return "no user";
    case LoginFault::kTlsRequired:
      return "TLS required";
    case LoginFault::kUnknownDatabase:
      return "unknown database";
    case LoginFault::kAddressRefused:
      return "address not in allowed_cidrs";
    case LoginFault::kUserNotAllowed:
      return "user not allowed";
    case LoginFault::kWrongPassword:
      return "wrong password";
    case LoginFault::kWrongProof:
      return "wrong SCRAM proof";
    case LoginFault::kUnknownUser:
      return "unknown user";
    case LoginFault::kNotAdmin:
      return "not an admin or stats user";
  }
  return "unknown";
}

AdminRole admin_role_of(const config::Config& config, std::string_view user) {
  auto listed = [&](const std::vector<std::string>& names) {
    return std::find(names.begin(), names.end(), user) != names.end();
  };
  if (listed(config.admin_users)) return AdminRole::kAdmin;
  if (listed(config.stats_users)) return AdminRole::kStats;
  return AdminRole::kNone;
}

Login::Login(LoginHost& host, TimeMs accepted_at, const sockaddr* peer)
    : host_(host), accepted_at_(accepted_at) {
  if (peer != nullptr) {
    const size_t length = peer->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
    std::memcpy(&peer_address_, peer, std::min(length, sizeof peer_address_));
    peer_ = format_address(peer);
  }
}

LoginOutcome Login::feed(Buffer& in, protocol::Bytes& out) {
  if (step_ == Step::kStartup) {
    LoginOutcome outcome = read_startup(in, out);
    // The StartupMessage may have been followed by the answer to the
    // authentication request it led to.
    if (outcome.next != LoginNext::kNeedMore || !authenticating()) return outcome;
  }
  return read_auth(in, out);
}

LoginOutcome Login::read_startup(Buffer& in, protocol::Bytes& out) {
  for (;;) {
    protocol::ByteView bytes = in.unparsed();
    protocol::Frame frame = protocol::frame_startup(bytes);
    if (frame.status == FrameStatus::kNeedMore) return {};
    if (frame.status == FrameStatus::kInvalid) {
      return failure(LoginFault::kProtocol, sqlstate::kProtocolViolation,
                     "invalid length of startup packet");
    }
    if (!frame.whole_in(bytes)) return {};
    auto packet = protocol::parse_startup_packet(bytes.first(frame.size));
    if (!packet) {
      const std::string code = packet.error().sqlstate.empty()
                                   ? std::string(sqlstate::kProtocolViolation)
                                   : packet.error().sqlstate;
      return failure(LoginFault::kProtocol, code, packet.error().message);
    }
    switch (packet->kind) {
      case protocol::StartupKind::kSslRequest:
        in.consume(frame.size);
        if (tls_ || !host_.client_tls_available()) {
          // 'N': go on in plaintext (55.2.10).
          out.push_back('N');
          continue;
        }
        if (!in.unparsed().empty()) {
          // Bytes sent before the handshake are unencrypted whatever they
          // claim: refuse them (CVE-2021-23214).
          return failure(LoginFault::kProtocol, sqlstate::kProtocolViolation,
                         "received unencrypted data after SSL request");
        }
        out.push_back('S');
        tls_ = true;
        return next(LoginNext::kStartTls);
      case protocol::StartupKind::kGssEncRequest:
        in.consume(frame.size);
        out.push_back('N');
        continue;
      case protocol::StartupKind::kCancelRequest: {
        in.consume(frame.size);
        LoginOutcome outcome = next(LoginNext::kCancel);
        outcome.cancel_pid = packet->cancel_pid;
        outcome.cancel_secret = packet->cancel_secret;
        return outcome;
      }
      case protocol::StartupKind::kStartup:
        break;
    }
    // The startup packet is complete: whatever follows, the startup
    // deadline no longer applies.
    step_ = Step::kDone;
    if (packet->user.empty()) {
      return failure(LoginFault::kNoUser, sqlstate::kInvalidAuthorization,
                     "no PostgreSQL user name specified in startup packet");
    }
    // The views point into the buffer: use them before consuming.
    const std::string user(packet->user);
    const std::string database(packet->database);
    for (const auto& [name, value] : packet->params) {
      if (name == "user" || name == "database" || name == "replication") continue;
      startup_params_.emplace_back(name, value);
    }
    in.consume(frame.size);
    return start_session(user, database, out);
  }
}

LoginOutcome Login::start_session(std::string_view user, std::string_view database,
                                  protocol::Bytes& out) {
  const config::Config& config = host_.config();
  if (!tls_ && config.effective_client_tls() == config::ClientTls::kRequire) {
    return failure(LoginFault::kTlsRequired, sqlstate::kInvalidAuthorization,
                   "pgmux accepts only TLS connections",
                   "connect with sslmode=require or stronger");
  }
  Pool* pool = host_.find_pool(database);
  if (pool == nullptr && is_admin_database(database)) {
    // The admin console: no pool. Only admin_users and stats_users may
    // ask for it, which is settled before any password exchange.
    user_ = std::string(user);
    admin_role_ = admin_role_of(config, user_);
    if (admin_role_ == AdminRole::kNone) {
      return failure(
          LoginFault::kNotAdmin, sqlstate::kInsufficientPrivilege,
          "user \"" + user_ + "\" may not use the admin console \"" + std::string(database) + "\"",
          "list the user in admin_users or stats_users");
    }
    // With no users configured, a database's upstream user logs in with
    // its upstream password, as for that database (the drop-in rule).
    const config::Upstream* upstream = nullptr;
    for (const config::Database& db : config.databases) {
      if (db.upstream.user == user_) {
        upstream = &db.upstream;
        break;
      }
    }
    return check_user(database, upstream, out);
  }
  if (pool == nullptr) {
    std::string served;
    for (const config::Database& db : config.databases) {
      served += (served.empty() ? "" : ", ") + db.name;
    }
    return failure(LoginFault::kUnknownDatabase, sqlstate::kInvalidCatalogName,
                   "database \"" + std::string(database) + "\" does not exist in pgmux",
                   "pgmux serves: " + served);
  }
  pool_ = pool;
  user_ = std::string(user);
  return check_user(database, &pool->database().upstream, out);
}

LoginOutcome Login::check_user(std::string_view database, const config::Upstream* upstream,
                               protocol::Bytes& out) {
  const config::Config& config = host_.config();
  // Who may log in: the configured users, or, with none configured, the
  // database's own upstream user with its upstream password (drop-in).
  const config::User* configured = config.find_user(user_);
  const std::vector<config::Cidr>* allowed = &config.allowed_cidrs;
  if (configured != nullptr) {
    known_user_ = true;
    credential_ = protocol::parse_credential(configured->password);
    if (!configured->allowed_cidrs.empty()) allowed = &configured->allowed_cidrs;
  } else if (config.users.empty() && upstream != nullptr && user_ == upstream->user) {
    known_user_ = config.auth_type == config::AuthType::kTrust || !upstream->password.empty();
    credential_ = protocol::parse_credential(upstream->password);
  }
  if (!allowed->empty()) {
    const auto* address = reinterpret_cast<const sockaddr*>(&peer_address_);
    const bool permitted = std::any_of(allowed->begin(), allowed->end(),
                                       [&](const config::Cidr& c) { return c.contains(address); });
    if (!permitted) {
      return failure(
          LoginFault::kAddressRefused, sqlstate::kInvalidAuthorization,
          "pgmux does not accept connections from " + peer_ + " for user \"" + user_ + "\"");
    }
  }
  if (config.auth_type == config::AuthType::kTrust) {
    if (!known_user_ && !config.users.empty()) {
      return failure(LoginFault::kUserNotAllowed, sqlstate::kInvalidAuthorization,
                     "user \"" + user_ + "\" is not known to pgmux");
    }
    if (!known_user_ && config.users.empty()) {
      std::string hint;
      if (upstream != nullptr) {
        hint = "connect as \"" + upstream->user + "\", the user pgmux logs in as";
      }
      return failure(LoginFault::kUserNotAllowed, sqlstate::kInvalidAuthorization,
                     "user \"" + user_ + "\" may not use database \"" + std::string(database) +
                         "\" through pgmux",
                     hint);
    }
    return authenticated();
  }
  begin_authentication(out);
  return {};
}

void Login::begin_authentication(protocol::Bytes& out) {
  const config::Config& config = host_.config();
  using Kind = protocol::Credential::Kind;
  config::AuthType method = config.auth_type;
  // A stored md5 hash cannot do SCRAM; as PgBouncer, fall back to md5.
  if (method == config::AuthType::kScramSha256 && known_user_ && credential_.kind == Kind::kMd5) {
    method = config::AuthType::kMd5;
  }
  switch (method) {
    case config::AuthType::kScramSha256: {
      protocol::ScramSecret secret;
      if (known_user_ && credential_.kind == Kind::kScram) {
        secret = credential_.scram;
      } else if (known_user_) {
        secret = host_.scram_secret_for(user_, credential_.plain);
      } else {
        // An unknown user runs the same exchange and fails at the proof.
        secret = protocol::mock_scram_secret(user_, host_.mock_seed());
      }
      std::string binding;
      if (tls_) binding = std::string(host_.client_tls_end_point());
      scram_ = std::make_unique<protocol::ScramServer>(std::move(secret), std::move(binding));
      std::vector<std::string_view> mechanisms;
      if (scram_->offers_plus()) mechanisms.emplace_back("SCRAM-SHA-256-PLUS");
      mechanisms.emplace_back("SCRAM-SHA-256");
      protocol::append_authentication_sasl(out, mechanisms);
      step_ = Step::kSaslInitial;
      break;
    }
    case config::AuthType::kMd5:
      protocol::fill_random(md5_salt_);
      protocol::append_authentication_md5(out, md5_salt_);
      step_ = Step::kMd5;
      break;
    default:
      protocol::append_authentication_cleartext(out);
      step_ = Step::kCleartext;
      break;
  }
}

LoginOutcome Login::read_auth(Buffer& in, protocol::Bytes& out) {
  for (;;) {
    protocol::ByteView bytes = in.unparsed();
    protocol::Frame frame = protocol::frame_message(bytes, host_.config().max_message_size);
    if (frame.status == FrameStatus::kNeedMore) return {};
    if (frame.status == FrameStatus::kInvalid || frame.size > in.capacity() ||
        frame.type != protocol::fe::kPassword) {
      return failure(LoginFault::kProtocol, sqlstate::kProtocolViolation,
                     "expected a password message");
    }
    if (!frame.whole_in(bytes)) return {};
    // Consumed first: after a finished login the caller processes the
    // client's next bytes at once. The view stays valid until the next read
    // into the buffer.
    protocol::ByteView message = bytes.first(frame.size);
    in.consume(frame.size);
    LoginOutcome outcome = handle_auth_message(message, out);
    if (outcome.next != LoginNext::kNeedMore) return outcome;
  }
}

LoginOutcome Login::handle_auth_message(protocol::ByteView message, protocol::Bytes& out) {
  switch (step_) {
    case Step::kSaslInitial: {
      auto initial = protocol::parse_sasl_initial_response(message);
      if (!initial) return failure(LoginFault::kProtocol, initial.error());
      auto server_first = scram_->handle_client_first(initial->mechanism, initial->data);
      if (!server_first) return failure(LoginFault::kProtocol, server_first.error());
      protocol::append_authentication_sasl_continue(out, *server_first);
      step_ = Step::kSaslFinal;
      return {};
    }
    case Step::kSaslFinal: {
      auto data = protocol::parse_sasl_response(message);
      if (!data) return failure(LoginFault::kProtocol, data.error());
      auto server_final = scram_->handle_client_final(*data);
      if (!server_final) {
        if (server_final.error().sqlstate == sqlstate::kInvalidPassword) {
          return authentication_failed(LoginFault::kWrongProof);
        }
        return failure(LoginFault::kProtocol, server_final.error());
      }
      if (!known_user_) return authentication_failed(LoginFault::kUnknownUser);
      scram_.reset();
      protocol::append_authentication_sasl_final(out, *server_final);
      return authenticated();
    }
    case Step::kMd5:
    case Step::kCleartext: {
      auto password = protocol::parse_password_message(message);
      if (!password) return failure(LoginFault::kProtocol, password.error());
      const bool ok = known_user_ &&
                      (step_ == Step::kMd5
                           ? protocol::verify_md5_response(credential_, user_, md5_salt_, *password)
                           : protocol::verify_cleartext(credential_, user_, *password));
      if (!ok) {
        return authentication_failed(known_user_ ? LoginFault::kWrongPassword
                                                 : LoginFault::kUnknownUser);
      }
      return authenticated();
    }
    case Step::kStartup:
    case Step::kDone:
      break;
  }
  assert(false && "Login::feed after the login ended");
  return failure(LoginFault::kProtocol, sqlstate::kProtocolViolation,
                 "expected a password message");
}

LoginOutcome Login::authenticated() {
  step_ = Step::kDone;
  credential_ = {};
  return next(admin_role_ != AdminRole::kNone ? LoginNext::kAdmin : LoginNext::kWelcome);
}

LoginOutcome Login::authentication_failed(LoginFault fault) {
  step_ = Step::kDone;
  scram_.reset();
  auth_failed_at_ = host_.now();
  LoginOutcome outcome = next(LoginNext::kFailAfterDelay);
  outcome.fault = fault;
  return outcome;
}

protocol::Error Login::delayed_failure() const {
  return protocol::Error{std::string(sqlstate::kInvalidPassword),
                         "password authentication failed for user \"" + user_ + "\""};
}

void Login::take_settings(const Pool& pool, ParamOverrides& overrides,
                          std::vector<std::string>& warnings) {
  // The startup packet's settings become this client's session: reported
  // parameters that differ from a fresh server's, and any other setting.
  std::vector<std::pair<std::string, std::string>> settings;
  for (auto& [name, value] : startup_params_) {
    if (name == "options") {
      StartupOptions options = parse_startup_options(value);
      for (const std::string& ignored : options.ignored) {
        warnings.push_back("ignoring startup option \"" + ignored + "\"");
      }
      for (auto& setting : options.settings) settings.push_back(std::move(setting));
    } else {
      settings.emplace_back(std::move(name), std::move(value));
    }
  }
  startup_params_.clear();
  for (const auto& [name, value] : settings) {
    std::optional<std::string> normal = normalise_param_name(name);
    if (!normal) {
      warnings.emplace_back("ignoring startup parameter with an unusual name");
      continue;
    }
    const std::string* baseline = pool.baseline_value(*normal);
    if (baseline == nullptr || *baseline != value) overrides.set(*normal, value, false);
  }
}

}  // namespace pgmux::proxy
