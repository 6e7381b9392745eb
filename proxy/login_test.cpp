// Login driven as a client would drive it, through a fake LoginHost with
// real config structs and pools: no sockets, no loop, no PostgreSQL.
#include "proxy/login.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>

#include <array>
#include <cstddef>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "protocol/auth.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"
#include "proxy/pool.h"
#include "proxy/upstream.h"

namespace pgmux::proxy {
namespace {

namespace sqlstate = protocol::sqlstate;
using protocol::Bytes;
using Params = std::vector<std::pair<std::string, std::string>>;

// Authentication request codes (PostgreSQL docs 55.7).
constexpr int32_t kAuthCleartext = 3;
constexpr int32_t kAuthMd5 = 5;
constexpr int32_t kAuthSasl = 10;
constexpr int32_t kAuthSaslContinue = 11;
constexpr int32_t kAuthSaslFinal = 12;

// Stands in for the tls-server-end-point hash of pgmux's certificate.
constexpr std::string_view kEndPoint = "0123456789abcdef0123456789abcdef";

// A pool's first server, as far as the pool's baseline is concerned.
class FakeServer final : public PooledServer {
 public:
  explicit FakeServer(ParameterList params) : params_(std::move(params)) {}
  const std::string& tag() const override { return tag_; }
  const ParameterList& parameters() const override { return params_; }
  TimeMs opened_at() const override { return 0; }
  TimeMs idle_since() const override { return 0; }
  TimeMs expires_at() const override { return std::numeric_limits<TimeMs>::max() / 2; }
  PooledClient* pooled_client() const override { return nullptr; }
  bool seems_alive() override { return true; }
  void start_check() override {}
  void start_survey() override {}
  TimeMs checking_since() const override { return 0; }
  void attach(PooledClient* /*client*/) override {}
  void detach() override {}
  void close(const char* /*reason*/) override {}

 private:
  std::string tag_ = "S-fake";
  ParameterList params_;
};

class FakeHost final : public LoginHost, public PoolHost {
 public:
  FakeHost() {
    config_.min_server_connections = 0;
    config_.databases = {database("app"), database("reports")};
    config_.users = {config::User{"alice", "alice-secret", {}}};
  }

  // LoginHost and PoolHost
  const config::Config& config() const override { return config_; }
  TimeMs now() const override { return now_; }
  // LoginHost
  Pool* find_pool(std::string_view name) override {
    if (pools_.empty()) {
      // Built on first use, once the test has set the config.
      upstream_ = std::make_unique<Upstream>("127.0.0.1:5432", 10, config_);
      for (const config::Database& db : config_.databases) {
        pools_.push_back(std::make_unique<Pool>(*this, db, *upstream_));
      }
    }
    for (auto& pool : pools_) {
      if (pool->name() == name) return pool.get();
    }
    return nullptr;
  }
  bool client_tls_available() const override { return tls; }
  std::string_view client_tls_end_point() const override { return tls ? kEndPoint : ""; }
  const protocol::ScramSecret& scram_secret_for(const std::string& /*user*/,
                                                const std::string& password) override {
    ++secrets_derived;
    secret_ = protocol::make_scram_secret(password);
    return secret_;
  }
  const std::string& mock_seed() const override { return seed_; }
  // PoolHost
  std::mt19937_64& rng() override { return rng_; }
  bool stopping() const override { return false; }
  void open_server(Pool& /*pool*/) override {}
  void probe(Pool& /*pool*/) override {}

  static config::Database database(std::string name) {
    config::Database db;
    db.name = std::move(name);
    db.upstream.user = "owner";
    db.upstream.password = "owner-secret";
    return db;
  }

  config::Config config_;
  TimeMs now_ = 5000;
  bool tls = false;
  int secrets_derived = 0;

 private:
  std::string seed_ = "a seed of thirty-two random bytes";
  protocol::ScramSecret secret_;
  std::mt19937_64 rng_{7};
  std::unique_ptr<Upstream> upstream_;
  std::vector<std::unique_ptr<Pool>> pools_;
};

sockaddr_in ipv4(const char* address, uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(port);
  REQUIRE(inet_pton(AF_INET, address, &in.sin_addr) == 1);
  return in;
}

// One client's login, fed the way ClientConn feeds it.
class Client {
 public:
  explicit Client(FakeHost& host, const char* address = "127.0.0.1")
      : peer_(ipv4(address, 5555)), login(host, 1000, reinterpret_cast<const sockaddr*>(&peer_)) {}
  // A peer whose address is unknown.
  Client(FakeHost& host, std::nullptr_t) : login(host, 1000, nullptr) {}

  // The client sends `bytes`; `out` then holds what the Login answered.
  LoginOutcome send(std::string_view bytes) {
    out.clear();
    std::span<uint8_t> tail = in.free_tail();
    REQUIRE(tail.size() >= bytes.size());
    std::memcpy(tail.data(), bytes.data(), bytes.size());
    in.commit_received(bytes.size());
    return login.feed(in, out);
  }

 private:
  sockaddr_in peer_{};
  BlockPool blocks_{8192};

 public:
  Buffer in{blocks_};
  Login login;
  Bytes out;
};

Bytes startup(const Params& params) {
  Bytes out;
  protocol::append_startup_message(out, params);
  return out;
}

Bytes request_code(uint32_t code) {
  Bytes out;
  for (uint32_t v : {8u, code}) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<char>(v >> shift));
  }
  return out;
}
Bytes ssl_request() { return request_code(80877103); }
Bytes gssenc_request() { return request_code(80877104); }

Bytes password_message(std::string_view password) {
  Bytes out;
  protocol::append_password_message(out, password);
  return out;
}

struct AuthRequest {
  int32_t code = -1;
  std::string data;
};

// The authentication request that is all of `out`.
AuthRequest auth_request(const Bytes& out) {
  const protocol::ByteView view(reinterpret_cast<const uint8_t*>(out.data()), out.size());
  const protocol::Frame frame = protocol::frame_message(view, 1u << 20);
  REQUIRE(frame.whole_in(view));
  REQUIRE(frame.type == 'R');
  REQUIRE(frame.size == out.size());
  auto parsed = protocol::parse_authentication(view.first(frame.size));
  REQUIRE(parsed);
  return {parsed->code,
          std::string(reinterpret_cast<const char*>(parsed->data.data()), parsed->data.size())};
}

std::vector<std::string> mechanisms(const AuthRequest& request) {
  REQUIRE(request.code == kAuthSasl);
  const protocol::ByteView data(reinterpret_cast<const uint8_t*>(request.data.data()),
                                request.data.size());
  auto names = protocol::parse_sasl_mechanisms(data);
  REQUIRE(names);
  return {names->begin(), names->end()};
}

// After AuthenticationSASL: SCRAM-SHA-256 as libpq runs it without channel
// binding, with ScramClient. Returns the outcome of the client's final
// message; at the welcome, checks the server's signature.
LoginOutcome scram_exchange(Client& c, const std::string& password) {
  protocol::ScramClient scram("", password);
  Bytes first;
  protocol::append_sasl_initial_response(first, "SCRAM-SHA-256", scram.client_first_message());
  LoginOutcome outcome = c.send(first);
  REQUIRE(outcome.next == LoginNext::kNeedMore);
  const AuthRequest server_first = auth_request(c.out);
  REQUIRE(server_first.code == kAuthSaslContinue);
  auto client_final = scram.handle_server_first(server_first.data);
  REQUIRE(client_final);
  Bytes final_message;
  protocol::append_sasl_response(final_message, *client_final);
  outcome = c.send(final_message);
  if (outcome.next == LoginNext::kWelcome || outcome.next == LoginNext::kAdmin) {
    const AuthRequest server_final = auth_request(c.out);
    CHECK(server_final.code == kAuthSaslFinal);
    CHECK(scram.verify_server_final(server_final.data).ok());
  } else {
    CHECK(c.out.empty());
  }
  return outcome;
}

void check_fail(const LoginOutcome& outcome, LoginFault fault, std::string_view code,
                std::string_view message) {
  CHECK(outcome.next == LoginNext::kFail);
  CHECK(outcome.fault == fault);
  CHECK(outcome.error.sqlstate == code);
  CHECK(outcome.error.message == message);
}

void check_delayed_failure(const Client& c, const LoginOutcome& outcome, LoginFault fault,
                           const FakeHost& host) {
  CHECK(outcome.next == LoginNext::kFailAfterDelay);
  CHECK(outcome.fault == fault);
  CHECK(c.login.auth_failed_at() == host.now_);
  CHECK_FALSE(c.login.authenticating());
  const protocol::Error error = c.login.delayed_failure();
  CHECK(error.sqlstate == sqlstate::kInvalidPassword);
  CHECK(error.message == "password authentication failed for user \"" + c.login.user() + "\"");
}

// ---- Startup packet ---------------------------------------------------------

TEST_CASE("Login: a startup packet fed one byte at a time leads to AuthenticationSASL") {
  FakeHost host;
  Client c(host);
  CHECK(c.login.accepted_at() == 1000);
  CHECK(c.login.peer() == "127.0.0.1:5555");
  const Bytes packet = startup({{"user", "alice"}, {"database", "app"}});
  for (size_t i = 0; i + 1 < packet.size(); ++i) {
    CHECK(c.send(packet.substr(i, 1)).next == LoginNext::kNeedMore);
    CHECK(c.out.empty());
    CHECK_FALSE(c.login.startup_complete());
  }
  CHECK(c.send(packet.substr(packet.size() - 1)).next == LoginNext::kNeedMore);
  CHECK(c.login.startup_complete());
  CHECK(c.login.authenticating());
  CHECK(c.login.user() == "alice");
  CHECK(c.login.pool() == host.find_pool("app"));
  CHECK(mechanisms(auth_request(c.out)) == std::vector<std::string>{"SCRAM-SHA-256"});
  CHECK(c.in.unparsed().empty());
}

TEST_CASE("Login: a startup packet with a bad length is 08P01") {
  FakeHost host;
  Client c(host);
  check_fail(c.send(request_code(80877103).replace(0, 4, std::string("\0\0\0\4", 4))),
             LoginFault::kProtocol, sqlstate::kProtocolViolation,
             "invalid length of startup packet");
  Client big(host);
  check_fail(big.send(std::string("\0\0\x27\x11", 4)), LoginFault::kProtocol,
             sqlstate::kProtocolViolation, "invalid length of startup packet");
  CHECK(c.out.empty());
}

TEST_CASE("Login: a startup packet without a user is 28000") {
  FakeHost host;
  Client c(host);
  const LoginOutcome outcome = c.send(startup({{"database", "app"}}));
  check_fail(outcome, LoginFault::kNoUser, sqlstate::kInvalidAuthorization,
             "no PostgreSQL user name specified in startup packet");
  CHECK(c.login.startup_complete());
}

TEST_CASE("Login: an unknown database is 3D000 with the databases pgmux serves") {
  FakeHost host;
  Client c(host);
  const LoginOutcome outcome = c.send(startup({{"user", "alice"}, {"database", "nope"}}));
  check_fail(outcome, LoginFault::kUnknownDatabase, sqlstate::kInvalidCatalogName,
             "database \"nope\" does not exist in pgmux");
  CHECK(outcome.hint == "pgmux serves: app, reports");
  CHECK(c.login.pool() == nullptr);
}

TEST_CASE("Login: SSLRequest without TLS gets 'N' and the login goes on in plaintext") {
  FakeHost host;
  Client c(host);
  // Both packets in one read.
  const LoginOutcome outcome =
      c.send(ssl_request() + startup({{"user", "alice"}, {"database", "app"}}));
  CHECK(outcome.next == LoginNext::kNeedMore);
  REQUIRE(c.out.size() > 1);
  CHECK(c.out[0] == 'N');
  CHECK(mechanisms(auth_request(c.out.substr(1))) == std::vector<std::string>{"SCRAM-SHA-256"});
}

TEST_CASE("Login: SSLRequest with TLS gets 'S', then SCRAM-SHA-256-PLUS is offered") {
  FakeHost host;
  host.tls = true;
  Client c(host);
  LoginOutcome outcome = c.send(ssl_request());
  CHECK(outcome.next == LoginNext::kStartTls);
  CHECK(c.out == "S");
  // The caller feeds again after starting TLS: nothing to read yet.
  c.out.clear();
  CHECK(c.login.feed(c.in, c.out).next == LoginNext::kNeedMore);
  CHECK(c.out.empty());
  // A second SSLRequest, over TLS, gets 'N'.
  CHECK(c.send(ssl_request()).next == LoginNext::kNeedMore);
  CHECK(c.out == "N");
  CHECK(c.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kNeedMore);
  CHECK(mechanisms(auth_request(c.out)) ==
        std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
  // libpq without channel binding support ("n,,") still logs in.
  CHECK(scram_exchange(c, "alice-secret").next == LoginNext::kWelcome);
}

TEST_CASE("Login: bytes sent after an SSLRequest and before the handshake are refused") {
  FakeHost host;
  host.tls = true;
  Client c(host);
  check_fail(c.send(ssl_request() + startup({{"user", "alice"}, {"database", "app"}})),
             LoginFault::kProtocol, sqlstate::kProtocolViolation,
             "received unencrypted data after SSL request");
  CHECK(c.out.empty());  // No 'S'.
}

TEST_CASE("Login: GSSENCRequest gets 'N'") {
  FakeHost host;
  host.tls = true;  // Even with TLS.
  Client c(host);
  CHECK(c.send(gssenc_request()).next == LoginNext::kNeedMore);
  CHECK(c.out == "N");
  CHECK_FALSE(c.login.startup_complete());
}

TEST_CASE("Login: a CancelRequest hands its key to the caller") {
  FakeHost host;
  Client c(host);
  Bytes cancel;
  protocol::append_cancel_request(cancel, 4242, -17);
  const LoginOutcome outcome = c.send(cancel);
  CHECK(outcome.next == LoginNext::kCancel);
  CHECK(outcome.cancel_pid == 4242);
  CHECK(outcome.cancel_secret == -17);
  CHECK(c.out.empty());
  CHECK(c.in.unparsed().empty());
}

TEST_CASE("Login: client_tls = require refuses plaintext and accepts TLS") {
  FakeHost host;
  host.tls = true;
  host.config_.client_tls = config::ClientTls::kRequire;
  Client plain(host);
  const LoginOutcome outcome = plain.send(startup({{"user", "alice"}, {"database", "app"}}));
  check_fail(outcome, LoginFault::kTlsRequired, sqlstate::kInvalidAuthorization,
             "pgmux accepts only TLS connections");
  CHECK(outcome.hint == "connect with sslmode=require or stronger");

  Client tls(host);
  CHECK(tls.send(ssl_request()).next == LoginNext::kStartTls);
  CHECK(tls.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kNeedMore);
  CHECK(tls.login.authenticating());
}

TEST_CASE("Login: allowed_cidrs refuses other addresses, a user's own list comes first") {
  FakeHost host;
  host.config_.allowed_cidrs = {*config::parse_cidr("10.0.0.0/8")};
  host.config_.users.push_back(
      config::User{"bob", "bob-secret", {*config::parse_cidr("127.0.0.1")}});

  Client outside(host, "127.0.0.1");
  const LoginOutcome outcome = outside.send(startup({{"user", "alice"}, {"database", "app"}}));
  check_fail(outcome, LoginFault::kAddressRefused, sqlstate::kInvalidAuthorization,
             "pgmux does not accept connections from 127.0.0.1:5555 for user \"alice\"");
  CHECK(outside.login.pool() != nullptr);  // Found before the refusal: the caller's tag names it.

  Client inside(host, "10.1.2.3");
  CHECK(inside.send(startup({{"user", "alice"}, {"database", "app"}})).next ==
        LoginNext::kNeedMore);
  CHECK(inside.login.authenticating());

  Client bob_local(host, "127.0.0.1");
  CHECK(bob_local.send(startup({{"user", "bob"}, {"database", "app"}})).next ==
        LoginNext::kNeedMore);
  Client bob_inside(host, "10.1.2.3");
  CHECK(bob_inside.send(startup({{"user", "bob"}, {"database", "app"}})).next == LoginNext::kFail);

  Client unknown_address(host, nullptr);
  CHECK(unknown_address.send(startup({{"user", "alice"}, {"database", "app"}})).fault ==
        LoginFault::kAddressRefused);
}

// ---- Authentication ---------------------------------------------------------

TEST_CASE("Login: trust welcomes known users at once and refuses the others") {
  FakeHost host;
  host.config_.auth_type = config::AuthType::kTrust;
  Client alice(host);
  CHECK(alice.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kWelcome);
  CHECK(alice.out.empty());
  CHECK_FALSE(alice.login.authenticating());

  Client eve(host);
  check_fail(eve.send(startup({{"user", "eve"}, {"database", "app"}})), LoginFault::kUserNotAllowed,
             sqlstate::kInvalidAuthorization, "user \"eve\" is not known to pgmux");

  // With no users configured, only the upstream's user, whatever its password.
  host.config_.users.clear();
  Client owner(host);
  CHECK(owner.send(startup({{"user", "owner"}, {"database", "reports"}})).next ==
        LoginNext::kWelcome);
  Client other(host);
  const LoginOutcome outcome = other.send(startup({{"user", "alice"}, {"database", "reports"}}));
  check_fail(outcome, LoginFault::kUserNotAllowed, sqlstate::kInvalidAuthorization,
             "user \"alice\" may not use database \"reports\" through pgmux");
  CHECK(outcome.hint == "connect as \"owner\", the user pgmux logs in as");
}

TEST_CASE("Login: cleartext password, right and wrong") {
  FakeHost host;
  host.config_.auth_type = config::AuthType::kPassword;
  Client right(host);
  // The password message in the same read as the startup packet.
  const LoginOutcome outcome = right.send(startup({{"user", "alice"}, {"database", "app"}}) +
                                          password_message("alice-secret"));
  CHECK(outcome.next == LoginNext::kWelcome);
  CHECK(auth_request(right.out).code == kAuthCleartext);

  Client wrong(host);
  CHECK(wrong.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kNeedMore);
  CHECK(auth_request(wrong.out).code == kAuthCleartext);
  host.now_ = 7000;
  check_delayed_failure(wrong, wrong.send(password_message("guess")), LoginFault::kWrongPassword,
                        host);
  CHECK(wrong.out.empty());

  Client unknown(host);
  CHECK(unknown.send(startup({{"user", "mallory"}, {"database", "app"}})).next ==
        LoginNext::kNeedMore);
  CHECK(auth_request(unknown.out).code == kAuthCleartext);
  check_delayed_failure(unknown, unknown.send(password_message("guess")), LoginFault::kUnknownUser,
                        host);
}

TEST_CASE("Login: MD5, right and wrong; a stored md5 hash falls back to MD5 under SCRAM") {
  FakeHost host;
  host.config_.auth_type = config::AuthType::kMd5;
  auto md5_login = [&](const std::string& user, const std::string& password) {
    Client c(host);
    CHECK(c.send(startup({{"user", user}, {"database", "app"}})).next == LoginNext::kNeedMore);
    const AuthRequest request = auth_request(c.out);
    REQUIRE(request.code == kAuthMd5);
    REQUIRE(request.data.size() == 4);
    std::array<uint8_t, 4> salt{};
    std::memcpy(salt.data(), request.data.data(), 4);
    LoginOutcome outcome =
        c.send(password_message(protocol::md5_password_response(user, password, salt)));
    if (outcome.next == LoginNext::kFailAfterDelay) {
      check_delayed_failure(c, outcome, outcome.fault, host);
    }
    return outcome;
  };
  CHECK(md5_login("alice", "alice-secret").next == LoginNext::kWelcome);
  const LoginOutcome wrong = md5_login("alice", "guess");
  CHECK(wrong.next == LoginNext::kFailAfterDelay);
  CHECK(wrong.fault == LoginFault::kWrongPassword);

  host.config_.auth_type = config::AuthType::kScramSha256;
  host.config_.users.push_back(
      config::User{"carol", protocol::md5_stored_hash("carol", "carol-secret"), {}});
  CHECK(md5_login("carol", "carol-secret").next == LoginNext::kWelcome);
}

TEST_CASE("Login: a full SCRAM-SHA-256 exchange ends in the welcome") {
  FakeHost host;
  Client c(host);
  CHECK(c.send(startup({{"user", "alice"}, {"database", "reports"}})).next == LoginNext::kNeedMore);
  CHECK(mechanisms(auth_request(c.out)) == std::vector<std::string>{"SCRAM-SHA-256"});
  CHECK(host.secrets_derived == 1);  // From the plain password.
  CHECK(scram_exchange(c, "alice-secret").next == LoginNext::kWelcome);
  CHECK(c.login.pool() == host.find_pool("reports"));
  CHECK_FALSE(c.login.authenticating());
}

TEST_CASE("Login: a stored SCRAM secret needs no derivation") {
  FakeHost host;
  host.config_.users = {config::User{
      "alice", protocol::format_scram_secret(protocol::make_scram_secret("alice-secret")), {}}};
  Client c(host);
  CHECK(c.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kNeedMore);
  CHECK(scram_exchange(c, "alice-secret").next == LoginNext::kWelcome);
  CHECK(host.secrets_derived == 0);
}

TEST_CASE("Login: under SCRAM an unknown user fails exactly like a wrong password") {
  FakeHost host;
  Client wrong(host);
  CHECK(wrong.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kNeedMore);
  const AuthRequest wrong_offer = auth_request(wrong.out);
  const LoginOutcome wrong_outcome = scram_exchange(wrong, "guess");
  check_delayed_failure(wrong, wrong_outcome, LoginFault::kWrongProof, host);

  Client unknown(host);
  CHECK(unknown.send(startup({{"user", "mallory"}, {"database", "app"}})).next ==
        LoginNext::kNeedMore);
  CHECK(auth_request(unknown.out).data == wrong_offer.data);
  const LoginOutcome unknown_outcome = scram_exchange(unknown, "guess");
  check_delayed_failure(unknown, unknown_outcome, LoginFault::kWrongProof, host);
  CHECK(unknown_outcome.next == wrong_outcome.next);
  CHECK(unknown.login.delayed_failure().sqlstate == wrong.login.delayed_failure().sqlstate);
}

TEST_CASE("Login: anything but a password message while authenticating is 08P01") {
  FakeHost host;
  Client c(host);
  CHECK(c.send(startup({{"user", "alice"}, {"database", "app"}})).next == LoginNext::kNeedMore);
  Bytes query;
  protocol::append_query(query, "SELECT 1");
  check_fail(c.send(query), LoginFault::kProtocol, sqlstate::kProtocolViolation,
             "expected a password message");
}

// ---- Welcome ----------------------------------------------------------------

TEST_CASE("Login: at the welcome, startup settings that differ from the baseline are overrides") {
  FakeHost host;
  host.config_.auth_type = config::AuthType::kTrust;
  Pool& pool = *host.find_pool("app");
  FakeServer server({{"server_version", "15.0"},
                     {"TimeZone", "UTC"},
                     {"DateStyle", "ISO, MDY"},
                     {"application_name", ""}});
  pool.on_server_opening(&server);
  pool.on_server_ready(&server);  // The pool's baseline.
  REQUIRE(pool.has_welcome());

  Client c(host);
  const LoginOutcome outcome = c.send(startup({{"user", "alice"},
                                               {"database", "app"},
                                               {"application_name", "psql"},
                                               {"TimeZone", "UTC"},
                                               {"DateStyle", "ISO"},
                                               {"options", "-c search_path=s1 -X --work-mem=1MB"},
                                               {"Bad Name", "x"}}));
  REQUIRE(outcome.next == LoginNext::kWelcome);
  ParamOverrides overrides;
  std::vector<std::string> warnings;
  c.login.take_settings(pool, overrides, warnings);
  CHECK(overrides.items().size() == 4);
  REQUIRE(overrides.find("application_name") != nullptr);
  CHECK(overrides.find("application_name")->value == "psql");
  REQUIRE(overrides.find("datestyle") != nullptr);
  CHECK(overrides.find("datestyle")->value == "ISO");
  REQUIRE(overrides.find("search_path") != nullptr);
  CHECK(overrides.find("search_path")->value == "s1");
  REQUIRE(overrides.find("work_mem") != nullptr);
  CHECK(overrides.find("work_mem")->value == "1MB");
  CHECK(overrides.find("timezone") == nullptr);  // Same as the baseline.
  CHECK(warnings == std::vector<std::string>{"ignoring startup option \"-X\"",
                                             "ignoring startup parameter with an unusual name"});
  pool.on_server_closing(&server);
}

// ---- The admin console ------------------------------------------------------

TEST_CASE("Login: an admin user reaches the admin console through its password, with no pool") {
  FakeHost host;
  host.config_.admin_users = {"alice"};
  for (const char* database : {"pgbouncer", "pgmux"}) {
    Client c(host);
    CHECK(c.send(startup({{"user", "alice"}, {"database", database}})).next ==
          LoginNext::kNeedMore);
    CHECK(c.login.admin_role() == AdminRole::kAdmin);
    CHECK(c.login.pool() == nullptr);
    CHECK(scram_exchange(c, "wrong").next == LoginNext::kFailAfterDelay);
    Client ok(host);
    ok.send(startup({{"user", "alice"}, {"database", database}}));
    CHECK(scram_exchange(ok, "alice-secret").next == LoginNext::kAdmin);
  }
}

TEST_CASE("Login: a stats user gets the stats role; others get 42501 before any password") {
  FakeHost host;
  host.config_.users.push_back(config::User{"bob", "bob-secret", {}});
  host.config_.stats_users = {"bob"};
  Client bob(host);
  bob.send(startup({{"user", "bob"}, {"database", "pgbouncer"}}));
  CHECK(bob.login.admin_role() == AdminRole::kStats);
  CHECK(scram_exchange(bob, "bob-secret").next == LoginNext::kAdmin);

  Client alice(host);
  const LoginOutcome outcome = alice.send(startup({{"user", "alice"}, {"database", "pgbouncer"}}));
  check_fail(outcome, LoginFault::kNotAdmin, sqlstate::kInsufficientPrivilege,
             "user \"alice\" may not use the admin console \"pgbouncer\"");
  CHECK(outcome.hint == "list the user in admin_users or stats_users");
  CHECK(alice.out.empty());
}

TEST_CASE("Login: with no users configured an upstream user in admin_users logs in (drop-in)") {
  FakeHost host;
  host.config_.users.clear();
  host.config_.admin_users = {"owner"};
  Client c(host);
  c.send(startup({{"user", "owner"}, {"database", "pgbouncer"}}));
  CHECK(scram_exchange(c, "owner-secret").next == LoginNext::kAdmin);
  host.config_.auth_type = config::AuthType::kTrust;
  Client trusted(host);
  CHECK(trusted.send(startup({{"user", "owner"}, {"database", "pgmux"}})).next ==
        LoginNext::kAdmin);
  // An admin name that is nobody's credential cannot log in.
  host.config_.admin_users = {"ghost"};
  Client ghost(host);
  CHECK(ghost.send(startup({{"user", "ghost"}, {"database", "pgmux"}})).next == LoginNext::kFail);
}

TEST_CASE("Login: a configured database named pgbouncer is a pool, not the console") {
  FakeHost host;
  host.config_.databases.push_back(FakeHost::database("pgbouncer"));
  host.config_.admin_users = {"alice"};
  Client c(host);
  c.send(startup({{"user", "alice"}, {"database", "pgbouncer"}}));
  CHECK(c.login.admin_role() == AdminRole::kNone);
  CHECK(c.login.pool() == host.find_pool("pgbouncer"));
  CHECK(scram_exchange(c, "alice-secret").next == LoginNext::kWelcome);
}

}  // namespace
}  // namespace pgmux::proxy
