// A libpq connection for tests, and a poll of the pool's counts: what most
// integration tests share.
#pragma once

#include <libpq-fe.h>
#include <sys/socket.h>

#include <chrono>
#include <stdexcept>
#include <string>

#include "tests/proxy_fixture.h"

namespace pgmux::testing {

struct Conn {
  PGconn* raw;
  explicit Conn(const std::string& conninfo) : raw(PQconnectdb(conninfo.c_str())) {}
  ~Conn() { PQfinish(raw); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  bool ok() const { return PQstatus(raw) == CONNECTION_OK; }
  std::string error() const { return PQerrorMessage(raw); }
  // Runs SQL; returns the first value, or throws with the error.
  std::string value(const std::string& sql) {
    PGresult* r = PQexec(raw, sql.c_str());
    const ExecStatusType status = PQresultStatus(r);
    std::string out;
    if (status == PGRES_TUPLES_OK && PQntuples(r) > 0) out = PQgetvalue(r, 0, 0);
    std::string err = PQresultErrorMessage(r);
    PQclear(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
      throw std::runtime_error("query failed: " + sql + ": " + err);
    }
    return out;
  }
  // Closes the socket under libpq, without a Terminate message: the way a
  // crashed or timed-out client goes.
  void drop() { ::shutdown(PQsocket(raw), SHUT_RDWR); }
};

// Polls the pool's counts until `done` holds or `limit` passes; returns the
// last counts seen.
template <class Done>
ProxyRunner::PoolCounts wait_for_counts(
    ProxyRunner& proxy, Done done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  ProxyRunner::PoolCounts counts = proxy.pool_counts();
  while (!done(counts) && std::chrono::steady_clock::now() < deadline) {
    counts = proxy.pool_counts();
  }
  return counts;
}

}  // namespace pgmux::testing
