#include "proxy/server_login.h"

#include <doctest/doctest.h>

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/auth_messages.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "protocol/scram_server.h"
#include "protocol/sqlstate.h"

namespace pgmux::proxy {
namespace {
namespace sqlstate = protocol::sqlstate;
using protocol::Bytes;
using protocol::ByteView;

ByteView view(const Bytes& bytes) {
  return {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()};
}

config::Upstream alice(std::string password = "s3cret") {
  config::Upstream up;
  up.user = "alice";
  up.password = std::move(password);
  up.dbname = "app";
  up.application_name = "pgmux";
  return up;
}

// Feeds one whole server message; the reply, if any, lands in `out`.
ServerLoginOutcome feed(ServerLogin& login, const Bytes& message, Bytes& out) {
  const protocol::Frame frame = protocol::frame_message(view(message), 1 << 20);
  REQUIRE(frame.whole_in(view(message)));
  REQUIRE(frame.size == message.size());
  return login.handle_message(frame.type, view(message), out);
}

// Feeds a message the login should take without a reply.
void feed_quietly(ServerLogin& login, const Bytes& message) {
  Bytes out;
  const ServerLoginOutcome outcome = feed(login, message, out);
  CHECK(outcome.next == ServerLoginNext::kContinue);
  CHECK(out.empty());
}

Bytes error_response(std::string_view code, std::string_view message) {
  Bytes out;
  protocol::append_error_response(out, "FATAL", code, message);
  return out;
}

Bytes auth_request(int32_t code, std::string_view data = {}) {
  const auto length = static_cast<uint32_t>(8 + data.size());
  Bytes out = "R";
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((length >> shift) & 0xff);
  const auto c = static_cast<uint32_t>(code);
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((c >> shift) & 0xff);
  out += data;
  return out;
}

// The one whole client message in `out`, after checking its type.
ByteView only_message(const Bytes& out, char type) {
  const protocol::Frame frame = protocol::frame_message(view(out), 1 << 20);
  REQUIRE(frame.whole_in(view(out)));
  REQUIRE(frame.size == out.size());
  CHECK(frame.type == type);
  return view(out);
}

void check_failed(const ServerLoginOutcome& outcome, std::string_view code, LoginFailure kind) {
  CHECK(outcome.next == ServerLoginNext::kFailed);
  CHECK(outcome.error.sqlstate == code);
  CHECK(outcome.kind == kind);
}

TEST_CASE("ServerLogin: the StartupMessage and the SSLRequest") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  Bytes out;
  login.append_startup(out);
  auto startup = protocol::parse_startup_packet(view(out));
  REQUIRE(startup.ok());
  CHECK(startup->kind == protocol::StartupKind::kStartup);
  CHECK(startup->version == protocol::kProtocolVersion3);
  REQUIRE(startup->params.size() == 3);
  CHECK(startup->params[0] == std::pair<std::string_view, std::string_view>{"user", "alice"});
  CHECK(startup->params[1] == std::pair<std::string_view, std::string_view>{"database", "app"});
  CHECK(startup->params[2] ==
        std::pair<std::string_view, std::string_view>{"application_name", "pgmux"});

  config::Upstream unnamed = alice();
  unnamed.application_name.clear();
  ServerLogin plain(unnamed, "appdb", false);
  out.clear();
  plain.append_startup(out);
  startup = protocol::parse_startup_packet(view(out));
  REQUIRE(startup.ok());
  CHECK(startup->params.size() == 2);

  CHECK_FALSE(login.asked_for_tls());
  out.clear();
  login.append_ssl_request(out);
  CHECK(login.asked_for_tls());
  CHECK(out == Bytes("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8));
}

TEST_CASE("ServerLogin: the answer to the SSLRequest") {
  config::Upstream up = alice();
  Bytes out;
  {
    ServerLogin login(up, "appdb", true);
    CHECK(login.handle_tls_answer('S', false, out).next == ServerLoginNext::kStartTls);
    CHECK(out.empty());
  }
  {
    ServerLogin login(up, "appdb", true);
    const ServerLoginOutcome outcome = login.handle_tls_answer('S', true, out);
    check_failed(outcome, sqlstate::kProtocolViolation, LoginFailure::kRejected);
    CHECK(outcome.error.message == "the upstream sent unencrypted data after accepting TLS");
    CHECK(out.empty());
  }
  for (config::SslMode mode : {config::SslMode::kPrefer, config::SslMode::kAllow}) {
    up.sslmode = mode;
    ServerLogin login(up, "appdb", true);
    out.clear();
    CHECK(login.handle_tls_answer('N', false, out).next == ServerLoginNext::kContinue);
    Bytes startup;
    login.append_startup(startup);
    CHECK(out == startup);
  }
  {
    up.sslmode = config::SslMode::kRequire;
    ServerLogin login(up, "appdb", true);
    out.clear();
    const ServerLoginOutcome outcome = login.handle_tls_answer('N', false, out);
    check_failed(outcome, sqlstate::kUnableToConnect, LoginFailure::kRejected);
    CHECK(outcome.error.message == "the upstream does not accept TLS, but sslmode is require");
    CHECK(out.empty());
  }
  {
    ServerLogin login(up, "appdb", true);
    const ServerLoginOutcome outcome = login.handle_tls_answer('E', false, out);
    check_failed(outcome, sqlstate::kProtocolViolation, LoginFailure::kRejected);
    CHECK(outcome.error.message == "the upstream answered the TLS request with neither S nor N");
  }
}

TEST_CASE("ServerLogin: a trust login collects the parameters and the key") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  Bytes message;
  protocol::append_authentication_ok(message);
  feed_quietly(login, message);
  for (auto [name, value] :
       {std::pair{"server_version", "15.4"}, {"client_encoding", "UTF8"}, {"TimeZone", "UTC"}}) {
    message.clear();
    protocol::append_parameter_status(message, name, value);
    feed_quietly(login, message);
  }
  // A repeated name is updated in place.
  message.clear();
  protocol::append_parameter_status(message, "client_encoding", "LATIN1");
  feed_quietly(login, message);
  message.clear();
  protocol::append_notice_response(message, "NOTICE", "00000", "hello");
  feed_quietly(login, message);
  message.clear();
  protocol::append_backend_key_data(message, 4242, -17);
  feed_quietly(login, message);
  CHECK(login.backend_pid() == 4242);
  CHECK(login.backend_secret() == -17);

  message.clear();
  protocol::append_ready_for_query(message, 'I');
  Bytes out;
  CHECK(feed(login, message, out).next == ServerLoginNext::kLoggedIn);
  CHECK(out.empty());
  const ParameterList expected = {
      {"server_version", "15.4"}, {"client_encoding", "LATIN1"}, {"TimeZone", "UTC"}};
  CHECK(login.parameters() == expected);
  CHECK(login.take_parameters() == expected);
}

TEST_CASE("ServerLogin: a cleartext password") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  Bytes message;
  protocol::append_authentication_cleartext(message);
  Bytes out;
  CHECK(feed(login, message, out).next == ServerLoginNext::kContinue);
  CHECK(out == Bytes("p\x00\x00\x00\x0bs3cret\x00", 12));
}

TEST_CASE("ServerLogin: an MD5 password") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  const std::array<uint8_t, 4> salt = {1, 2, 3, 4};
  Bytes message;
  protocol::append_authentication_md5(message, salt);
  Bytes out;
  CHECK(feed(login, message, out).next == ServerLoginNext::kContinue);
  // "md5" + md5hex(md5hex("s3cret" + "alice") + salt), NUL-terminated.
  CHECK(out == Bytes("p\x00\x00\x00\x28md5b79948bbeb35dee03ab8fe15a839030b\x00", 41));
  auto response = protocol::parse_password_message(only_message(out, protocol::fe::kPassword));
  REQUIRE(response.ok());
  CHECK(protocol::verify_md5_response(protocol::parse_credential("s3cret"), "alice", salt,
                                      *response));

  ServerLogin short_salt(up, "appdb", false);
  out.clear();
  check_failed(feed(short_salt, auth_request(protocol::kAuthMd5Password, "abc"), out),
               sqlstate::kProtocolViolation, LoginFailure::kRejected);
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: a SCRAM-SHA-256 exchange with ScramServer") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  protocol::ScramServer server(protocol::make_scram_secret("s3cret"), "");

  Bytes message;
  protocol::append_authentication_sasl(message, {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
  Bytes out;
  REQUIRE(feed(login, message, out).next == ServerLoginNext::kContinue);
  auto initial = protocol::parse_sasl_initial_response(only_message(out, protocol::fe::kPassword));
  REQUIRE(initial.ok());
  CHECK(initial->mechanism == "SCRAM-SHA-256");
  CHECK(initial->data.substr(0, 8) == "n,,n=,r=");
  auto server_first = server.handle_client_first(initial->mechanism, initial->data);
  REQUIRE(server_first.ok());

  message.clear();
  protocol::append_authentication_sasl_continue(message, *server_first);
  out.clear();
  REQUIRE(feed(login, message, out).next == ServerLoginNext::kContinue);
  auto client_final = protocol::parse_sasl_response(only_message(out, protocol::fe::kPassword));
  REQUIRE(client_final.ok());
  // The server checks the proof: the client knew the password.
  auto server_final = server.handle_client_final(*client_final);
  REQUIRE(server_final.ok());

  message.clear();
  protocol::append_authentication_sasl_final(message, *server_final);
  out.clear();
  CHECK(feed(login, message, out).next == ServerLoginNext::kContinue);
  CHECK(out.empty());
  message.clear();
  protocol::append_authentication_ok(message);
  feed_quietly(login, message);
  message.clear();
  protocol::append_ready_for_query(message, 'I');
  CHECK(feed(login, message, out).next == ServerLoginNext::kLoggedIn);
}

TEST_CASE("ServerLogin: a SCRAM server that does not know the password is refused") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  protocol::ScramServer server(protocol::make_scram_secret("s3cret"), "");
  Bytes message;
  protocol::append_authentication_sasl(message, {"SCRAM-SHA-256"});
  Bytes out;
  REQUIRE(feed(login, message, out).next == ServerLoginNext::kContinue);
  auto initial = protocol::parse_sasl_initial_response(only_message(out, protocol::fe::kPassword));
  REQUIRE(initial.ok());
  auto server_first = server.handle_client_first(initial->mechanism, initial->data);
  REQUIRE(server_first.ok());
  message.clear();
  protocol::append_authentication_sasl_continue(message, *server_first);
  out.clear();
  REQUIRE(feed(login, message, out).next == ServerLoginNext::kContinue);

  // A forged server signature (32 zero bytes).
  message.clear();
  protocol::append_authentication_sasl_final(message,
                                             "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
  out.clear();
  const ServerLoginOutcome outcome = feed(login, message, out);
  check_failed(outcome, sqlstate::kInvalidAuthorization, LoginFailure::kRejected);
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: SASL messages out of order are protocol violations") {
  const config::Upstream up = alice();
  Bytes out;
  {
    ServerLogin login(up, "appdb", false);
    Bytes message;
    protocol::append_authentication_sasl_continue(message, "r=abc,s=c2FsdA==,i=4096");
    const ServerLoginOutcome outcome = feed(login, message, out);
    check_failed(outcome, sqlstate::kProtocolViolation, LoginFailure::kRejected);
    CHECK(outcome.error.message == "unexpected SASL message");
  }
  {
    ServerLogin login(up, "appdb", false);
    Bytes message;
    protocol::append_authentication_sasl_final(message, "v=abc");
    const ServerLoginOutcome outcome = feed(login, message, out);
    check_failed(outcome, sqlstate::kProtocolViolation, LoginFailure::kRejected);
    CHECK(outcome.error.message == "unexpected SASL final message");
  }
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: a password is asked for but none is configured") {
  const config::Upstream up = alice("");
  std::vector<Bytes> requests(3);
  protocol::append_authentication_cleartext(requests[0]);
  protocol::append_authentication_md5(requests[1], {1, 2, 3, 4});
  protocol::append_authentication_sasl(requests[2], {"SCRAM-SHA-256"});
  for (const Bytes& request : requests) {
    ServerLogin login(up, "appdb", false);
    Bytes out;
    const ServerLoginOutcome outcome = feed(login, request, out);
    check_failed(outcome, sqlstate::kInvalidPassword, LoginFailure::kRejected);
    CHECK(outcome.error.message ==
          "the upstream asks user \"alice\" for a password, but pgmux has none: put it in the "
          "url or password_file of database \"appdb\"");
    CHECK(out.empty());
  }
}

TEST_CASE("ServerLogin: unsupported authentication") {
  const config::Upstream up = alice();
  Bytes out;
  {
    ServerLogin login(up, "appdb", false);
    const ServerLoginOutcome outcome = feed(login, auth_request(7), out);  // GSSAPI
    check_failed(outcome, sqlstate::kFeatureNotSupported, LoginFailure::kRejected);
    CHECK(outcome.error.message ==
          "the upstream asks for an authentication method pgmux does not support (code 7)");
  }
  {
    // Channel binding only: pgmux offers none upstream.
    ServerLogin login(up, "appdb", false);
    Bytes message;
    protocol::append_authentication_sasl(message, {"SCRAM-SHA-256-PLUS"});
    const ServerLoginOutcome outcome = feed(login, message, out);
    check_failed(outcome, sqlstate::kFeatureNotSupported, LoginFailure::kRejected);
    CHECK(outcome.error.message ==
          "the upstream offers no SASL mechanism pgmux supports (SCRAM-SHA-256 without channel "
          "binding)");
  }
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: capacity refusals versus rejections") {
  const config::Upstream up = alice();
  Bytes out;
  {
    ServerLogin login(up, "appdb", false);
    const ServerLoginOutcome outcome =
        feed(login, error_response("53300", "sorry, too many clients already"), out);
    check_failed(outcome, sqlstate::kTooManyConnections, LoginFailure::kNoCapacity);
    CHECK(outcome.error.message == "sorry, too many clients already");
  }
  {
    ServerLogin login(up, "appdb", false);
    const ServerLoginOutcome outcome = feed(
        login,
        error_response("XX000",
                       "(EMAXCONNSESSION) max clients reached in session mode - max clients are "
                       "limited to pool_size: 15"),
        out);
    check_failed(outcome, sqlstate::kInternalError, LoginFailure::kNoCapacity);
  }
  {
    ServerLogin login(up, "appdb", false);
    const ServerLoginOutcome outcome = feed(login, error_response("XX000", "something broke"), out);
    check_failed(outcome, sqlstate::kInternalError, LoginFailure::kRejected);
  }
  {
    ServerLogin login(up, "appdb", false);
    const ServerLoginOutcome outcome = feed(
        login, error_response("28P01", "password authentication failed for user \"alice\""), out);
    check_failed(outcome, sqlstate::kInvalidPassword, LoginFailure::kRejected);
    CHECK(outcome.error.message == "password authentication failed for user \"alice\"");
  }
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: sslmode=allow retries a refused plaintext login with TLS") {
  config::Upstream up = alice();
  up.sslmode = config::SslMode::kAllow;
  const Bytes refusal = error_response(
      "28000", "no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", no encryption");
  Bytes out;
  {
    ServerLogin login(up, "appdb", true);
    const ServerLoginOutcome outcome = feed(login, refusal, out);
    CHECK(outcome.next == ServerLoginNext::kRetryWithTls);
    CHECK(outcome.error.sqlstate == "28000");
    CHECK(outcome.error.message ==
          "no pg_hba.conf entry for host \"127.0.0.1\", user \"alice\", no encryption");
  }
  {
    // Already over TLS: the refusal is final.
    ServerLogin login(up, "appdb", true);
    login.append_ssl_request(out);
    out.clear();
    check_failed(feed(login, refusal, out), sqlstate::kInvalidAuthorization,
                 LoginFailure::kRejected);
  }
  {
    // No TLS context to retry with.
    ServerLogin login(up, "appdb", false);
    check_failed(feed(login, refusal, out), sqlstate::kInvalidAuthorization,
                 LoginFailure::kRejected);
  }
  {
    // A full upstream is not a reason to try TLS.
    ServerLogin login(up, "appdb", true);
    check_failed(feed(login, error_response("53300", "sorry, too many clients already"), out),
                 sqlstate::kTooManyConnections, LoginFailure::kNoCapacity);
  }
  {
    // prefer asked for TLS already if it could.
    up.sslmode = config::SslMode::kPrefer;
    ServerLogin login(up, "appdb", true);
    check_failed(feed(login, refusal, out), sqlstate::kInvalidAuthorization,
                 LoginFailure::kRejected);
  }
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: an unexpected message during login") {
  const config::Upstream up = alice();
  ServerLogin login(up, "appdb", false);
  Bytes message;
  protocol::append_data_row(message, {"1"});
  Bytes out;
  const ServerLoginOutcome outcome = feed(login, message, out);
  check_failed(outcome, sqlstate::kProtocolViolation, LoginFailure::kRejected);
  CHECK(outcome.error.message == "unexpected message 'D' from the server during login");
  CHECK(out.empty());
}

TEST_CASE("ServerLogin: a malformed authentication request or error is rejected") {
  const config::Upstream up = alice();
  Bytes out;
  {
    ServerLogin login(up, "appdb", false);
    check_failed(feed(login, Bytes("R\x00\x00\x00\x06\x00\x00", 7), out),
                 sqlstate::kProtocolViolation, LoginFailure::kRejected);
  }
  {
    ServerLogin login(up, "appdb", false);
    check_failed(feed(login, Bytes("E\x00\x00\x00\x06Sx", 7), out), sqlstate::kProtocolViolation,
                 LoginFailure::kRejected);
  }
  CHECK(out.empty());
}

}  // namespace
}  // namespace pgmux::proxy
