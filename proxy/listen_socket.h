// A listening TCP handle bound with SO_REUSEPORT when asked: a second pgmux
// can then bind the same address while the first drains (an online upgrade).
// Debian 12's libuv (1.44) has no UV_TCP_REUSEPORT, so the socket is made
// here and handed to libuv with uv_tcp_open.
#pragma once

#include <sys/socket.h>
#include <uv.h>

namespace pgmux::proxy {

// Binds `handle` (initialised with uv_tcp_init, not yet bound) to `address`
// with SO_REUSEADDR, and SO_REUSEPORT when `reuseport`; the caller then
// calls uv_listen. Returns 0 or a libuv error code (negative errno). On
// error the handle may hold the socket: the caller closes the handle as
// usual.
int bind_listener(uv_tcp_t* handle, const sockaddr* address, bool reuseport);

}  // namespace pgmux::proxy
