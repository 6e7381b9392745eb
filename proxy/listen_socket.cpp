#include "proxy/listen_socket.h"

#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>

namespace pgmux::proxy {

bool parse_ip_address(const std::string& host, uint16_t port, sockaddr_storage& address) {
  address = {};
  return uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&address)) == 0 ||
         uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&address)) == 0;
}

int bind_listener(uv_tcp_t* handle, const sockaddr* address, bool reuseport) {
  const int fd = ::socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const int on = 1;
  // libuv's own uv_tcp_bind sets SO_REUSEADDR too: a restarted pgmux can bind
  // while the old one's connections sit in TIME_WAIT.
  int rc = ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  if (rc == 0 && reuseport) rc = ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on);
  if (rc == 0 && address->sa_family == AF_INET6) {
    // As uv_tcp_bind without UV_TCP_IPV6ONLY: an IPv6 wildcard takes IPv4 too.
    const int off = 0;
    rc = ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  const socklen_t length =
      address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (rc == 0) rc = ::bind(fd, address, length);
  if (rc != 0) {
    const int error = errno;
    ::close(fd);
    return -error;
  }
  rc = uv_tcp_open(handle, fd);
  if (rc != 0) ::close(fd);
  return rc;
}

uint16_t bound_port(const uv_tcp_t* handle) {
  sockaddr_storage bound{};
  int length = sizeof bound;
  if (uv_tcp_getsockname(handle, reinterpret_cast<sockaddr*>(&bound), &length) != 0) return 0;
  if (bound.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
}

}  // namespace pgmux::proxy
