// A client and a server TlsSession talking to each other in memory: the
// test moves the ciphertext between them, so no socket is involved.
#include "proxy/tls_session.h"

#include <doctest/doctest.h>
#include <openssl/ssl.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tests/pg_fixture.h"

namespace pgmux::proxy {
namespace {

using testing::test_pki;

// The error message, or "" on success (doctest's -s evaluates messages of
// passing checks too, so error() must not be called on a success).
template <class T>
std::string error_of(const protocol::Result<T>& result) {
  return result.ok() ? std::string() : result.error().message;
}

std::unique_ptr<TlsContext> server_context(const std::string& cert, const std::string& key) {
  auto context = TlsContext::server(cert, key);
  REQUIRE_MESSAGE(context.ok(), error_of(context));
  return std::move(*context);
}

std::unique_ptr<TlsContext> client_context(TlsVerify verify, const std::string& root) {
  auto context = TlsContext::client(verify, root);
  REQUIRE_MESSAGE(context.ok(), error_of(context));
  return std::move(*context);
}

std::span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Moves whatever `from` has to send into `to`. Returns the bytes moved.
size_t pump(TlsSession& from, TlsSession& to) {
  std::string wire;
  from.take_output(wire);
  to.feed(bytes(wire));
  return wire.size();
}

// Drives both handshakes to the end, or to the first error. Returns "" on
// success, else "client: ..." or "server: ...".
std::string handshake(TlsSession& client, TlsSession& server) {
  for (int round = 0; round < 20; ++round) {
    auto c = client.handshake();
    if (!c.ok()) {
      pump(client, server);  // Deliver the alert, as a real connection would.
      return "client: " + c.error().message;
    }
    pump(client, server);
    auto s = server.handshake();
    if (!s.ok()) {
      pump(server, client);
      return "server: " + s.error().message;
    }
    pump(server, client);
    if (*c && *s) return "";
  }
  return "handshake did not finish";
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(gen());
  return out;
}

// Sends `data` from `from` to `to` in uneven chunks, reading into a small
// buffer on the other side, and checks every byte arrives in order.
void transfer(TlsSession& from, TlsSession& to, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> received;
  received.reserve(data.size());
  uint8_t buf[7000];
  size_t sent = 0;
  size_t chunk = 1;
  while (received.size() < data.size()) {
    if (sent < data.size()) {
      const size_t n = std::min(chunk, data.size() - sent);
      REQUIRE(from.write({data.data() + sent, n}).ok());
      sent += n;
      chunk = chunk * 3 + 1;
      if (chunk > 100000) chunk = 1;
    }
    pump(from, to);
    for (;;) {
      auto n = to.read(buf);
      REQUIRE_MESSAGE(n.ok(), error_of(n));
      if (*n == 0) break;
      received.insert(received.end(), buf, buf + *n);
    }
    // Nothing but application data flows here: the server sends no tickets.
    CHECK_FALSE(to.has_output());
  }
  CHECK(sent == data.size());
  CHECK(received == data);
}

TEST_CASE("TlsSession: a verify-full pair handshakes in memory and moves 1 MB each way") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  auto client_ctx = client_context(TlsVerify::kFull, pki.ca_cert);
  CHECK(server_ctx->is_server());
  CHECK_FALSE(client_ctx->is_server());
  CHECK(client_ctx->server_end_point().empty());

  TlsSession client(*client_ctx, "localhost");
  TlsSession server(*server_ctx);
  CHECK_FALSE(client.handshake_done());
  CHECK(handshake(client, server) == "");
  CHECK(client.handshake_done());
  CHECK(server.handshake_done());
  CHECK_FALSE(client.has_output());
  CHECK_FALSE(server.has_output());

  // RFC 5929 tls-server-end-point: SHA-256 of the certificate, the digest of
  // its ecdsa-with-SHA256 signature. Both ends see the same value.
  CHECK(server_ctx->server_end_point().size() == 32);
  CHECK(client.end_point() == server_ctx->server_end_point());
  CHECK(server.end_point() == server_ctx->server_end_point());

  const auto up = random_bytes(1 << 20, 1);
  const auto down = random_bytes(1 << 20, 2);
  transfer(client, server, up);
  transfer(server, client, down);

  // Nothing buffered means a read returns 0, not an error.
  uint8_t buf[16];
  auto n = client.read(buf);
  REQUIRE(n.ok());
  CHECK(*n == 0);
}

TEST_CASE("TlsSession: a byte at a time still completes the handshake") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  auto client_ctx = client_context(TlsVerify::kFull, pki.ca_cert);
  TlsSession client(*client_ctx, "127.0.0.1");  // An IP literal: checked against SAN IP.
  TlsSession server(*server_ctx);
  std::string to_server;
  std::string to_client;
  bool client_done = false;
  bool server_done = false;
  for (int step = 0; step < 100000 && !(client_done && server_done); ++step) {
    auto c = client.handshake();
    REQUIRE_MESSAGE(c.ok(), error_of(c));
    client_done = *c;
    client.take_output(to_server);
    if (!to_server.empty()) {
      server.feed(bytes(to_server.substr(0, 1)));
      to_server.erase(0, 1);
    }
    auto s = server.handshake();
    REQUIRE_MESSAGE(s.ok(), error_of(s));
    server_done = *s;
    server.take_output(to_client);
    if (!to_client.empty()) {
      client.feed(bytes(to_client.substr(0, 1)));
      to_client.erase(0, 1);
    }
  }
  CHECK(client_done);
  CHECK(server_done);
  transfer(client, server, random_bytes(1000, 3));
}

TEST_CASE("TlsSession: verify-full refuses a certificate for another host") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  auto client_ctx = client_context(TlsVerify::kFull, pki.ca_cert);
  TlsSession client(*client_ctx, "wrong.example");
  TlsSession server(*server_ctx);
  const std::string error = handshake(client, server);
  CAPTURE(error);
  CHECK(error.find("client: TLS handshake failed: certificate verify failed") == 0);
  CHECK(error.find("hostname mismatch") != std::string::npos);
}

TEST_CASE("TlsSession: verify-full refuses a wrong IP address") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  auto client_ctx = client_context(TlsVerify::kFull, pki.ca_cert);
  TlsSession client(*client_ctx, "127.0.0.2");
  TlsSession server(*server_ctx);
  const std::string error = handshake(client, server);
  CAPTURE(error);
  CHECK(error.find("IP address mismatch") != std::string::npos);
}

TEST_CASE("TlsSession: a server certificate naming another host fails verify-full") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.wrong_host_cert, pki.wrong_host_key);
  auto client_ctx = client_context(TlsVerify::kFull, pki.ca_cert);
  TlsSession client(*client_ctx, "localhost");
  TlsSession server(*server_ctx);
  const std::string error = handshake(client, server);
  CAPTURE(error);
  CHECK(error.find("client: ") == 0);
  CHECK(error.find("hostname mismatch") != std::string::npos);

  // verify-ca does not look at the name, so the same certificate passes.
  auto ca_ctx = client_context(TlsVerify::kCa, pki.ca_cert);
  TlsSession client2(*ca_ctx, "localhost");
  TlsSession server2(*server_ctx);
  CHECK(handshake(client2, server2) == "");
}

TEST_CASE("TlsSession: verify-ca refuses a chain to an unknown root, and the server hears it") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  auto client_ctx = client_context(TlsVerify::kCa, pki.other_ca_cert);
  TlsSession client(*client_ctx, "localhost");
  TlsSession server(*server_ctx);
  const std::string error = handshake(client, server);
  CAPTURE(error);
  CHECK(error.find("client: TLS handshake failed: certificate verify failed (") == 0);
  CHECK(error.find("local issuer certificate") != std::string::npos);

  // The client's fatal alert reached the server; its next step fails too.
  auto s = server.handshake();
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().sqlstate == "08006");
  CAPTURE(s.error().message);
  CHECK(s.error().message.find("TLS handshake failed: ") == 0);
  CHECK(s.error().message.find("alert") != std::string::npos);
}

TEST_CASE("TlsSession: kNone encrypts without checking the chain") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.wrong_host_cert, pki.wrong_host_key);
  auto client_ctx = client_context(TlsVerify::kNone, pki.other_ca_cert);
  TlsSession client(*client_ctx, "localhost");
  TlsSession server(*server_ctx);
  CHECK(handshake(client, server) == "");
  transfer(server, client, random_bytes(100, 4));
}

TEST_CASE("TlsSession: garbage from the peer is a handshake error, not a crash") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  TlsSession server(*server_ctx);
  // A plaintext PostgreSQL StartupMessage where a ClientHello should be.
  const std::string startup("\x00\x00\x00\x08\x04\xd2\x16\x2f", 8);
  server.feed(bytes(startup));
  auto s = server.handshake();
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().sqlstate == "08006");
  CHECK(s.error().message.find("TLS handshake failed: ") == 0);
}

// Records the SNI each ClientHello carried ("" for none) on the server side.
int record_servername(SSL* ssl, int* /*alert*/, void* arg) {
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  static_cast<std::vector<std::string>*>(arg)->emplace_back(name != nullptr ? name : "");
  return SSL_TLSEXT_ERR_OK;
}

TEST_CASE("sni_for: the host name unless sslsni=0, never an IP address literal") {
  CHECK(sni_for("db.example.com", true) == "db.example.com");
  CHECK(sni_for("db.example.com", false) == "");
  CHECK(sni_for("127.0.0.1", true) == "");
  CHECK(sni_for("::1", true) == "");
  CHECK(sni_for("", true) == "");
}

TEST_CASE(
    "TlsSession: SNI is sent with sslsni=1 only, and verify-full checks the name either way") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  std::vector<std::string> seen;
  SSL_CTX_set_tlsext_servername_callback(server_ctx->get(), record_servername);
  SSL_CTX_set_tlsext_servername_arg(server_ctx->get(), &seen);
  auto none_ctx = client_context(TlsVerify::kNone, "");
  auto full_ctx = client_context(TlsVerify::kFull, pki.ca_cert);
  struct Case {
    const TlsContext* context;
    const char* host;
    bool sni;
    const char* expected_sni;
    bool succeeds;
  };
  const Case cases[] = {
      {none_ctx.get(), "localhost", true, "localhost", true},
      {none_ctx.get(), "localhost", false, "", true},
      {none_ctx.get(), "127.0.0.1", true, "", true},
      {full_ctx.get(), "localhost", false, "", true},
      {full_ctx.get(), "wrong.example", false, "", false},
  };
  for (const Case& c : cases) {
    CAPTURE(c.host);
    CAPTURE(c.sni);
    seen.clear();
    // Built as Stream::start_tls builds it for ServerConn and CancelConn.
    TlsSession client(*c.context, c.host, c.sni);
    TlsSession server(*server_ctx);
    const std::string error = handshake(client, server);
    CAPTURE(error);
    CHECK(error.empty() == c.succeeds);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == c.expected_sni);
  }
}

TEST_CASE("TlsContext: missing or mismatched files are errors naming the file") {
  const auto& pki = test_pki();
  auto missing = TlsContext::server(pki.dir + "/nope.crt", pki.server_key);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message.find("nope.crt") != std::string::npos);

  auto mismatch = TlsContext::server(pki.server_cert, pki.wrong_host_key);
  REQUIRE_FALSE(mismatch.ok());
  // OpenSSL checks the key against the loaded certificate as it loads it.
  CAPTURE(mismatch.error().message);
  CHECK(mismatch.error().message.find("wrong_host.key") != std::string::npos);
  CHECK(mismatch.error().message.find("key values mismatch") != std::string::npos);

  auto no_root = TlsContext::client(TlsVerify::kFull, pki.dir + "/no-root.crt");
  REQUIRE_FALSE(no_root.ok());
  CHECK(no_root.error().message.find("no-root.crt") != std::string::npos);

  auto half = TlsContext::client(TlsVerify::kNone, "", pki.server_cert, "");
  CHECK_FALSE(half.ok());

  auto system = TlsContext::client(TlsVerify::kFull, "");
  CHECK(system.ok());
}

TEST_CASE("TlsSession: a TLS 1.1 client is refused") {
  const auto& pki = test_pki();
  auto server_ctx = server_context(pki.server_cert, pki.server_key);
  auto client_ctx = client_context(TlsVerify::kNone, "");
  // Security level 0 lets this OpenSSL offer TLS 1.1 at all.
  SSL_CTX_set_security_level(client_ctx->get(), 0);
  SSL_CTX_set_min_proto_version(client_ctx->get(), TLS1_1_VERSION);
  SSL_CTX_set_max_proto_version(client_ctx->get(), TLS1_1_VERSION);
  TlsSession client(*client_ctx, "localhost");
  TlsSession server(*server_ctx);
  const std::string error = handshake(client, server);
  CAPTURE(error);
  CHECK(error.find("server: TLS handshake failed: ") == 0);
  CHECK(error.find("protocol") != std::string::npos);
}

}  // namespace
}  // namespace pgmux::proxy
