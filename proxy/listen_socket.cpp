#include "proxy/listen_socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>

namespace pgmux::proxy {

int bind_listener(uv_tcp_t* handle, const sockaddr* address, bool reuseport) {
  if (!reuseport) return uv_tcp_bind(handle, address, 0);
  const int fd = ::socket(address->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  const int on = 1;
  const socklen_t length =
      address->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0 ||
      ::bind(fd, address, length) != 0) {
    const int error = -errno;
    ::close(fd);
    return error;
  }
  // From here the handle owns the socket: uv_close closes it.
  const int rc = uv_tcp_open(handle, fd);
  if (rc != 0) ::close(fd);
  return rc;
}

}  // namespace pgmux::proxy
