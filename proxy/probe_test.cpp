// Probe against a loopback listener and a closed port, on a real uv loop
// that must close cleanly.
#include "proxy/probe.h"

#include <doctest/doctest.h>

#include <optional>
#include <string>

namespace pgmux::proxy {
namespace {

struct Recorder final : ProbeEvents {
  void on_probe_done(Probe& /*probe*/, bool connected) override {
    CHECK_FALSE(result.has_value());  // Exactly once.
    result = connected;
  }
  void on_probe_closed(Probe& /*probe*/) override { closed = true; }
  std::optional<bool> result;
  bool closed = false;
};

// A listening socket on 127.0.0.1, port 0; returns the port.
uint16_t listen_on(uv_loop_t* loop, uv_tcp_t* listener) {
  REQUIRE(uv_tcp_init(loop, listener) == 0);
  sockaddr_in address{};
  uv_ip4_addr("127.0.0.1", 0, &address);
  REQUIRE(uv_tcp_bind(listener, reinterpret_cast<const sockaddr*>(&address), 0) == 0);
  REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(listener), 8,
                    [](uv_stream_t* /*server*/, int /*status*/) {}) == 0);
  sockaddr_in bound{};
  int length = sizeof bound;
  uv_tcp_getsockname(listener, reinterpret_cast<sockaddr*>(&bound), &length);
  return ntohs(bound.sin_port);
}

TEST_CASE("probe: connects to a listener, is refused by a closed port, cancels cleanly") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  uv_tcp_t listener;
  const uint16_t port = listen_on(&loop, &listener);

  SUBCASE("listening") {
    Recorder events;
    Probe probe(events, 1, "127.0.0.1", port);
    REQUIRE(probe.start(&loop));
    while (!events.result.has_value()) uv_run(&loop, UV_RUN_ONCE);
    CHECK(*events.result);
    uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(events.closed);
  }
  SUBCASE("refused") {
    uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);  // The port is free again.
    Recorder events;
    Probe probe(events, 2, "127.0.0.1", port);
    REQUIRE(probe.start(&loop));
    uv_run(&loop, UV_RUN_DEFAULT);
    REQUIRE(events.result.has_value());
    CHECK_FALSE(*events.result);
    CHECK(events.closed);
  }
  SUBCASE("cancelled while connecting") {
    Recorder events;
    Probe probe(events, 3, "127.0.0.1", port);
    REQUIRE(probe.start(&loop));
    probe.cancel();
    probe.cancel();  // Idempotent.
    REQUIRE(events.result.has_value());
    CHECK_FALSE(*events.result);
    uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(events.closed);
  }
  SUBCASE("a host name is resolved first") {
    Recorder events;
    Probe probe(events, 4, "localhost", port);
    REQUIRE(probe.start(&loop));
    // The listener stays open until the result.
    while (!events.result.has_value()) uv_run(&loop, UV_RUN_ONCE);
    CHECK(*events.result);
    uv_close(reinterpret_cast<uv_handle_t*>(&listener), nullptr);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(events.closed);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace pgmux::proxy
