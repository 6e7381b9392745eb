#include "proxy/listen_socket.h"

#include <doctest/doctest.h>

namespace pgmux::proxy {
namespace {

TEST_CASE("listen_socket: with SO_REUSEPORT a second listener shares the port, without it not") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  uv_tcp_t first;
  uv_tcp_t shared;
  uv_tcp_t plain;
  for (uv_tcp_t* handle : {&first, &shared, &plain}) uv_tcp_init(&loop, handle);
  sockaddr_storage address{};
  REQUIRE(parse_ip_address("127.0.0.1", 0, address));
  REQUIRE(bind_listener(&first, reinterpret_cast<const sockaddr*>(&address), true) == 0);
  REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&first), 8, [](uv_stream_t*, int) {}) == 0);
  const uint16_t port = bound_port(&first);
  REQUIRE(port != 0);

  REQUIRE(parse_ip_address("127.0.0.1", port, address));
  CHECK(bind_listener(&shared, reinterpret_cast<const sockaddr*>(&address), true) == 0);
  CHECK(bound_port(&shared) == port);
  CHECK(bind_listener(&plain, reinterpret_cast<const sockaddr*>(&address), false) == UV_EADDRINUSE);

  CHECK_FALSE(parse_ip_address("localhost", 1, address));
  REQUIRE(parse_ip_address("::1", 5, address));
  CHECK(address.ss_family == AF_INET6);

  for (uv_tcp_t* handle : {&first, &shared, &plain}) {
    uv_close(reinterpret_cast<uv_handle_t*>(handle), nullptr);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace pgmux::proxy
