// A listening TCP socket with an optional SO_REUSEPORT, for the client
// listener and the metrics listener. libuv 1.44 (Debian 12) has no
// UV_TCP_REUSEPORT, so the socket is made here, configured, bound, and then
// handed to libuv with uv_tcp_open.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstdint>
#include <string>

namespace pgmux::proxy {

// Fills `address` from an IPv4 or IPv6 literal and a port. False when `host`
// is not an IP address.
bool parse_ip_address(const std::string& host, uint16_t port, sockaddr_storage& address);

// Binds `handle` to `address` (SO_REUSEADDR always, SO_REUSEPORT when
// `reuseport`), ready for uv_listen. Returns 0 or a libuv error code; on
// error no socket is left open, and the handle still needs uv_close.
// REQUIRES: `handle` was uv_tcp_init'ed and holds no socket yet.
int bind_listener(uv_tcp_t* handle, const sockaddr* address, bool reuseport);

// The port a bound handle listens on (the one the kernel picked for port 0).
uint16_t bound_port(const uv_tcp_t* handle);

}  // namespace pgmux::proxy
