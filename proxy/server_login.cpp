#include "proxy/server_login.h"

#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "protocol/message_type.h"
#include "protocol/refusal.h"
#include "protocol/sqlstate.h"

namespace pgmux::proxy {
namespace sqlstate = protocol::sqlstate;
namespace be = protocol::be;
using protocol::Error;

namespace {

ServerLoginOutcome just(ServerLoginNext next) {
  ServerLoginOutcome outcome;
  outcome.next = next;
  return outcome;
}

ServerLoginOutcome failed(std::string_view sqlstate, std::string message,
                          LoginFailure kind = LoginFailure::kRejected) {
  return ServerLoginOutcome{ServerLoginNext::kFailed,
                            Error{std::string(sqlstate), std::move(message)}, kind};
}

ServerLoginOutcome failed(const Error& error) {
  return ServerLoginOutcome{ServerLoginNext::kFailed, error, LoginFailure::kRejected};
}

}  // namespace

ServerLogin::ServerLogin(const config::Upstream& upstream, std::string_view pool_name,
                         bool has_tls_context)
    : upstream_(upstream), pool_name_(pool_name), has_tls_context_(has_tls_context) {}

void ServerLogin::append_ssl_request(protocol::Bytes& out) {
  asked_for_tls_ = true;
  protocol::append_ssl_request(out);
}

void ServerLogin::append_startup(protocol::Bytes& out) const {
  std::vector<std::pair<std::string, std::string>> params = {{"user", upstream_.user},
                                                             {"database", upstream_.dbname}};
  if (!upstream_.application_name.empty()) {
    params.emplace_back("application_name", upstream_.application_name);
  }
  protocol::append_startup_message(out, params);
}

ServerLoginOutcome ServerLogin::handle_tls_answer(char answer, bool more_bytes,
                                                  protocol::Bytes& out) {
  if (answer == 'S') {
    if (more_bytes) {
      // Bytes after 'S' and before the handshake were not encrypted: a
      // man in the middle could have injected them (CVE-2021-23222).
      return failed(sqlstate::kProtocolViolation,
                    "the upstream sent unencrypted data after accepting TLS");
    }
    return just(ServerLoginNext::kStartTls);
  }
  if (answer == 'N') {
    // allow asks only after a refused plaintext login and, as libpq, goes on
    // in plaintext if the server says no (a refusal then is final).
    if (upstream_.sslmode == config::SslMode::kPrefer ||
        upstream_.sslmode == config::SslMode::kAllow) {
      append_startup(out);
      return just(ServerLoginNext::kContinue);
    }
    return failed(sqlstate::kUnableToConnect,
                  "the upstream does not accept TLS, but sslmode is " +
                      std::string(config::to_string(upstream_.sslmode)));
  }
  return failed(sqlstate::kProtocolViolation,
                "the upstream answered the TLS request with neither S nor N");
}

ServerLoginOutcome ServerLogin::handle_message(char type, protocol::ByteView message,
                                               protocol::Bytes& out) {
  switch (type) {
    case be::kAuthentication:
      return handle_authentication(message, out);
    case be::kParameterStatus: {
      auto status = protocol::parse_parameter_status(message);
      if (status) {
        bool found = false;
        for (auto& [name, value] : params_) {
          if (name == status->name) {
            value = std::string(status->value);
            found = true;
          }
        }
        if (!found) params_.emplace_back(std::string(status->name), std::string(status->value));
      }
      return just(ServerLoginNext::kContinue);
    }
    case be::kBackendKeyData: {
      auto key = protocol::parse_backend_key_data(message);
      if (key) {
        backend_pid_ = key->pid;
        backend_secret_ = key->secret;
      }
      return just(ServerLoginNext::kContinue);
    }
    case be::kErrorResponse:
      return handle_error(message);
    case be::kReadyForQuery:
      return just(ServerLoginNext::kLoggedIn);
    case be::kNoticeResponse:
    case be::kNegotiateProtocolVersion:  // We asked for 3.0 only.
      return just(ServerLoginNext::kContinue);
    default:
      return failed(sqlstate::kProtocolViolation,
                    std::string("unexpected message '") + type + "' from the server during login");
  }
}

ServerLoginOutcome ServerLogin::handle_authentication(protocol::ByteView message,
                                                      protocol::Bytes& out) {
  auto auth = protocol::parse_authentication(message);
  if (!auth) return failed(auth.error());
  const bool needs_password =
      auth->code != protocol::kAuthOk && auth->code != protocol::kAuthSaslFinal;
  if (needs_password && upstream_.password.empty()) {
    return failed(sqlstate::kInvalidPassword,
                  "the upstream asks user \"" + upstream_.user +
                      "\" for a password, but pgmux has none: put it in the url or "
                      "password_file of database \"" +
                      std::string(pool_name_) + "\"");
  }
  switch (auth->code) {
    case protocol::kAuthOk:
      break;
    case protocol::kAuthCleartextPassword:
      protocol::append_password_message(out, upstream_.password);
      break;
    case protocol::kAuthMd5Password: {
      if (auth->data.size() != 4) return failed(sqlstate::kProtocolViolation, "bad MD5 salt");
      std::array<uint8_t, 4> salt{};
      std::memcpy(salt.data(), auth->data.data(), 4);
      protocol::append_password_message(
          out, protocol::md5_password_response(upstream_.user, upstream_.password, salt));
      break;
    }
    case protocol::kAuthSasl: {
      auto mechanisms = protocol::parse_sasl_mechanisms(auth->data);
      bool scram = false;
      if (mechanisms) {
        for (std::string_view m : *mechanisms) scram = scram || m == "SCRAM-SHA-256";
      }
      if (!scram) {
        return failed(sqlstate::kFeatureNotSupported,
                      "the upstream offers no SASL mechanism pgmux supports "
                      "(SCRAM-SHA-256 without channel binding)");
      }
      // PostgreSQL ignores the SCRAM user name (the startup packet's counts).
      scram_ = std::make_unique<protocol::ScramClient>("", upstream_.password);
      protocol::append_sasl_initial_response(out, "SCRAM-SHA-256", scram_->client_first_message());
      break;
    }
    case protocol::kAuthSaslContinue: {
      if (!scram_) return failed(sqlstate::kProtocolViolation, "unexpected SASL message");
      std::string_view server_first(reinterpret_cast<const char*>(auth->data.data()),
                                    auth->data.size());
      auto client_final = scram_->handle_server_first(server_first);
      if (!client_final) return failed(client_final.error());
      protocol::append_sasl_response(out, *client_final);
      break;
    }
    case protocol::kAuthSaslFinal: {
      std::string_view server_final(reinterpret_cast<const char*>(auth->data.data()),
                                    auth->data.size());
      auto verified = scram_ ? scram_->verify_server_final(server_final)
                             : protocol::Status(Error{std::string(sqlstate::kProtocolViolation),
                                                      "unexpected SASL final message"});
      if (!verified) return failed(verified.error());
      scram_.reset();
      break;
    }
    default:
      return failed(sqlstate::kFeatureNotSupported,
                    "the upstream asks for an authentication method pgmux does not "
                    "support (code " +
                        std::to_string(auth->code) + ")");
  }
  return just(ServerLoginNext::kContinue);
}

ServerLoginOutcome ServerLogin::handle_error(protocol::ByteView message) const {
  auto fields = protocol::parse_error_response(message);
  if (!fields) return failed(fields.error());
  Error error{std::string(fields->sqlstate), std::string(fields->message)};
  const bool capacity = protocol::is_capacity_refusal(fields->sqlstate, fields->message);
  if (!capacity && upstream_.sslmode == config::SslMode::kAllow && !asked_for_tls_ &&
      has_tls_context_) {
    // libpq's allow: a plaintext login the server refuses (pg_hba.conf with
    // only hostssl for this user answers 28000 "... no encryption") is tried
    // again with TLS.
    return ServerLoginOutcome{ServerLoginNext::kRetryWithTls, std::move(error),
                              LoginFailure::kRejected};
  }
  return ServerLoginOutcome{ServerLoginNext::kFailed, std::move(error),
                            capacity ? LoginFailure::kNoCapacity : LoginFailure::kRejected};
}

}  // namespace pgmux::proxy
