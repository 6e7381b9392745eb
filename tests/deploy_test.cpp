// The pgmux binary under systemd's Type=notify: READY=1 once it listens and
// STOPPING=1 when a shutdown starts, on the datagram socket named by
// $NOTIFY_SOCKET.
#include <doctest/doctest.h>
#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <string>

#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"

namespace pgmux::testing {
namespace {

// Waits (up to `seconds`) for one datagram on `fd`; empty on timeout.
std::string receive(int fd, int seconds) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, seconds * 1000) != 1) return {};
  char buffer[512];
  const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
  return n > 0 ? std::string(buffer, static_cast<size_t>(n)) : std::string();
}

TEST_CASE("systemd notify: READY=1 once pgmux listens, STOPPING=1 at SIGTERM") {
  PgServer pg;
  const std::string socket_path = (std::filesystem::temp_directory_path() /
                                   ("pgmux-notify-" + std::to_string(getpid()) + ".sock"))
                                      .string();
  std::filesystem::remove(socket_path);
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, socket_path.c_str(), sizeof address.sun_path - 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);

  const uint16_t port = free_port();
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    setenv("DATABASE_URL", pg.url(kScramUser, kScramPassword).c_str(), 1);
    setenv("PGMUX_LISTEN", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
    setenv("PGMUX_MIN_SERVER_CONNECTIONS", "0", 1);
    setenv("PGMUX_LOG_LEVEL", "warn", 1);
    setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
    execl(PGMUX_BINARY, PGMUX_BINARY, static_cast<char*>(nullptr));
    _exit(127);
  }
  const std::string ready = receive(fd, 20);
  CHECK(ready == "READY=1");
  // Ready means listening: a client gets in at once.
  const std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port) +
                               " user=" + kScramUser + " password=" + kScramPassword +
                               " dbname=app sslmode=disable connect_timeout=5";
  CHECK(PQping(conninfo.c_str()) == PQPING_OK);
  REQUIRE(kill(pid, SIGTERM) == 0);
  CHECK(receive(fd, 20) == "STOPPING=1");
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  ::close(fd);
  std::filesystem::remove(socket_path);
}

}  // namespace
}  // namespace pgmux::testing
