// CancelConn's deadline: a cancel request towards an upstream that never
// answers is given up by the janitor, and the loop still closes cleanly.
#include "proxy/cancel.h"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "config/config.h"
#include "proxy/proxy.h"
#include "proxy/tls_session.h"

namespace pgmux::proxy {
namespace {

// A loopback socket that listens and never accepts: the kernel completes the
// TCP handshake (the backlog has room), but nothing ever reads or answers.
struct SilentListener {
  int fd = -1;
  sockaddr_in address{};
  SilentListener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  }
  ~SilentListener() { ::close(fd); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
};

// Runs `loop` until nothing is left on it, for at most 10 s: a connection
// left open would otherwise keep a plain uv_run going for as long as the
// upstream keeps it.
void run_dry(uv_loop_t* loop) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (uv_run(loop, UV_RUN_NOWAIT) != 0 && std::chrono::steady_clock::now() < deadline) {
  }
}

// A proxy listening on a free port whose one database is `upstream`; no
// server is opened (no client asks, none kept warm).
config::Config config_for(const SilentListener& upstream) {
  config::Config config;
  config.listen_host = "127.0.0.1";
  config.listen_port = 0;
  config.min_server_connections = 0;
  config::Database database;
  database.name = "app";
  database.upstream.host = "127.0.0.1";
  database.upstream.port = ntohs(upstream.address.sin_port);
  database.upstream.user = "app";
  database.upstream.dbname = "app";
  database.upstream.sslmode = config::SslMode::kDisable;
  config.databases.push_back(database);
  return config;
}

TEST_CASE("CancelConn: an upstream that never answers the SSLRequest is given up at the deadline") {
  using Clock = std::chrono::steady_clock;
  SilentListener upstream;
  config::Config config = config_for(upstream);
  config.server_connect_timeout = std::chrono::milliseconds(300);

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    auto tls = TlsContext::client(TlsVerify::kNone, "");
    REQUIRE(tls.ok());
    Proxy proxy(config, &loop);
    REQUIRE(proxy.start().ok());

    const auto start = Clock::now();
    proxy.open_cancel(reinterpret_cast<const sockaddr*>(&upstream.address), 1, 2, tls->get(),
                      "localhost", true);
    CHECK(proxy.cancels_in_flight() == 1);
    // The janitor ticks every 100 ms, so each run returns soon.
    while (proxy.cancels_in_flight() > 0 && Clock::now() < start + std::chrono::seconds(10)) {
      uv_run(&loop, UV_RUN_ONCE);
    }
    CHECK(proxy.cancels_in_flight() == 0);
    // Not sooner than the deadline (uv_now lags a little behind the clock).
    CHECK(Clock::now() - start >= std::chrono::milliseconds(250));

    proxy.stop();
    run_dry(&loop);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("CancelConn: stop() closes a cancel request still in flight") {
  SilentListener upstream;
  const config::Config config = config_for(upstream);

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    auto tls = TlsContext::client(TlsVerify::kNone, "");
    REQUIRE(tls.ok());
    Proxy proxy(config, &loop);
    REQUIRE(proxy.start().ok());
    proxy.open_cancel(reinterpret_cast<const sockaddr*>(&upstream.address), 1, 2, tls->get(),
                      "localhost", true);
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(proxy.cancels_in_flight() == 1);
    proxy.stop();
    // The janitor is gone: only stop() itself can end the cancel.
    run_dry(&loop);
    CHECK(proxy.cancels_in_flight() == 0);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace pgmux::proxy
