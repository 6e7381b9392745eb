// Clients that stall before they log in: partial startup-type packets, a
// stalled TLS handshake, a TLS client that sends nothing after it. Raw
// sockets, so the test controls every byte; TLS through pgmux's own
// TlsSession over a blocking socket.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "proxy/tls_session.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;

PgServer& prelogin_pg() {
  static PgServer pg;
  return pg;
}

int connect_raw(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  return fd;
}

void send_all(int fd, const std::string& bytes) {
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(bytes.size()));
}

std::string be32(uint32_t v) {
  std::string s(4, '\0');
  s[0] = static_cast<char>(v >> 24);
  s[1] = static_cast<char>(v >> 16);
  s[2] = static_cast<char>(v >> 8);
  s[3] = static_cast<char>(v);
  return s;
}

// Waits for bytes until `deadline`: what arrived, "" at EOF. Fails the test
// at the deadline.
std::string receive(int fd, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    REQUIRE_MESSAGE(left > 0, "nothing from pgmux before the deadline");
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n == 0) return {};
    if (n < 0) return {};  // A reset counts as closed, too.
    return std::string(chunk, static_cast<size_t>(n));
  }
}

// Everything up to EOF.
std::string receive_all(int fd, Clock::time_point deadline) {
  std::string all;
  while (true) {
    std::string more = receive(fd, deadline);
    if (more.empty()) return all;
    all += more;
  }
}

// The SQLSTATE of the FATAL ErrorResponse `bytes` starts with.
std::string fatal_sqlstate(const std::string& bytes) {
  protocol::ByteView view(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  protocol::Frame frame = protocol::frame_message(view, 1 << 20);
  if (!frame.whole_in(view) || frame.type != 'E') return "no ErrorResponse";
  auto fields = protocol::parse_error_response(view.first(frame.size));
  if (!fields) return "malformed ErrorResponse";
  CHECK(fields->severity == "FATAL");
  return std::string(fields->sqlstate);
}

std::string ssl_request() { return be32(8) + be32(80877103); }

// Sends an SSLRequest and reads pgmux's one-byte answer.
void start_tls(int fd, Clock::time_point deadline) {
  send_all(fd, ssl_request());
  CHECK(receive(fd, deadline) == "S");
}

// The first bytes of a real ClientHello, not enough to act on.
std::string partial_client_hello() {
  auto context = proxy::TlsContext::client(proxy::TlsVerify::kNone, "");
  REQUIRE(context.ok());
  proxy::TlsSession session(**context, "localhost");
  REQUIRE(session.handshake().ok());
  std::string hello;
  session.take_output(hello);
  REQUIRE(hello.size() > 20);
  return hello.substr(0, 20);
}

config::Config client_tls_config(std::chrono::milliseconds login_timeout) {
  const TestPki& pki = test_pki();
  config::Config config = make_config(prelogin_pg());
  config.client_tls_cert_file = pki.server_cert;
  config.client_tls_key_file = pki.server_key;
  config.client_login_timeout = login_timeout;
  config.min_server_connections = 0;
  return config;
}

std::string query_one(const std::string& conninfo, const std::string& sql) {
  PGconn* conn = PQconnectdb(conninfo.c_str());
  std::string value;
  if (PQstatus(conn) == CONNECTION_OK) {
    PGresult* r = PQexec(conn, sql.c_str());
    value = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r);
    PQclear(r);
  } else {
    value = PQerrorMessage(conn);
  }
  PQfinish(conn);
  return value;
}

std::string tls_conninfo(const ProxyRunner& proxy) {
  return "host=127.0.0.1 port=" + std::to_string(proxy.port()) + " dbname=app user=" + kScramUser +
         " password=" + kScramPassword + " sslmode=require";
}

TEST_CASE(
    "client_login_timeout in the TLS handshake closes without a word; after it, FATAL is "
    "encrypted") {
  // 1 s: shorter than the startup deadline, so client_login_timeout fires.
  ProxyRunner proxy(client_tls_config(std::chrono::milliseconds(1000)));
  CHECK(query_one(tls_conninfo(proxy), "select 1") == "1");
  const auto deadline = Clock::now() + std::chrono::seconds(4);

  // After 'S', one client sends nothing and one half a ClientHello.
  int silent = connect_raw(proxy.port());
  start_tls(silent, deadline);
  int partial = connect_raw(proxy.port());
  start_tls(partial, deadline);
  send_all(partial, partial_client_hello());

  // One completes the handshake and then sends no startup packet.
  int handshaken = connect_raw(proxy.port());
  start_tls(handshaken, deadline);
  auto context = proxy::TlsContext::client(proxy::TlsVerify::kNone, "");
  REQUIRE(context.ok());
  proxy::TlsSession tls(**context, "localhost");
  for (;;) {
    auto done = tls.handshake();
    REQUIRE_MESSAGE(done.ok(), (done.ok() ? "" : done.error().message));
    std::string out;
    tls.take_output(out);
    if (!out.empty()) send_all(handshaken, out);
    if (*done) break;
    const std::string in = receive(handshaken, deadline);
    REQUIRE_FALSE(in.empty());
    tls.feed({reinterpret_cast<const uint8_t*>(in.data()), in.size()});
  }

  // No plaintext where TLS records are expected: just EOF.
  CHECK(receive_all(silent, deadline).empty());
  CHECK(receive_all(partial, deadline).empty());
  const std::string ciphertext = receive_all(handshaken, deadline);
  tls.feed({reinterpret_cast<const uint8_t*>(ciphertext.data()), ciphertext.size()});
  std::vector<uint8_t> plain(4096);
  auto n = tls.read(plain);
  REQUIRE(n.ok());
  CHECK(fatal_sqlstate(std::string(reinterpret_cast<const char*>(plain.data()), *n)) == "08P01");
  ::close(silent);
  ::close(partial);
  ::close(handshaken);

  // pgmux is still there for everyone else.
  CHECK(query_one(tls_conninfo(proxy), "select 2") == "2");
}

TEST_CASE(
    "partial SSLRequest, StartupMessage or CancelRequest: 08P01 at the startup deadline, "
    "long before client_login_timeout") {
  ProxyRunner proxy(client_tls_config(std::chrono::seconds(60)));
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::seconds(20);
  const std::string startup_body =
      be32(196608) + std::string("user\0app_scram\0database\0app\0\0", 29);
  const std::string startup = be32(static_cast<uint32_t>(4 + startup_body.size())) + startup_body;
  struct Stalled {
    const char* what;
    std::string bytes;
    int fd = -1;
  };
  std::vector<Stalled> stalled = {
      {"nothing", ""},
      {"half an SSLRequest", ssl_request().substr(0, 6)},
      {"half a StartupMessage", startup.substr(0, startup.size() / 2)},
      {"half a CancelRequest", (be32(16) + be32(80877102) + be32(1) + be32(2)).substr(0, 10)},
      {"a length and nothing else", be32(8)},
  };
  for (Stalled& s : stalled) {
    s.fd = connect_raw(proxy.port());
    if (!s.bytes.empty()) send_all(s.fd, s.bytes);
  }
  // Over TLS, stalled in the handshake: closed without a word.
  int tls_stalled = connect_raw(proxy.port());
  start_tls(tls_stalled, deadline);
  send_all(tls_stalled, partial_client_hello());

  for (Stalled& s : stalled) {
    CAPTURE(s.what);
    CHECK(fatal_sqlstate(receive_all(s.fd, deadline)) == "08P01");
    ::close(s.fd);
  }
  CHECK(receive_all(tls_stalled, deadline).empty());
  ::close(tls_stalled);
  const auto elapsed = Clock::now() - start;
  // The startup deadline (5 s), not client_login_timeout (60 s).
  CHECK(elapsed >= std::chrono::seconds(4));
  CHECK(elapsed < std::chrono::seconds(20));

  CHECK(query_one(tls_conninfo(proxy), "select 3") == "3");
}

}  // namespace
}  // namespace pgmux::testing
