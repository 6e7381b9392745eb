// pgmux in-process for integration tests: a Proxy on its own loop and
// thread, listening on a free loopback port, in front of a PgServer.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "config/config.h"
#include "proxy/proxy.h"
#include "tests/pg_fixture.h"

namespace pgmux::testing {

// A Config with one database "app" served by `pg` as `user`, listening on
// 127.0.0.1:0, application_name "pgmux" upstream (to find its backends in
// pg_stat_activity), other settings at their defaults.
config::Config make_config(const PgServer& pg, const std::string& user = kScramUser,
                           const std::string& password = kScramPassword);

// make_config with at most `servers` server connections and none kept warm,
// so that clients must share them.
config::Config make_small_config(const PgServer& pg, uint32_t servers);

class ProxyRunner {
 public:
  explicit ProxyRunner(config::Config config);
  // Stops the proxy, joins its thread and checks the loop closed cleanly.
  ~ProxyRunner();
  ProxyRunner(const ProxyRunner&) = delete;
  ProxyRunner& operator=(const ProxyRunner&) = delete;

  uint16_t port() const { return port_; }
  // libpq key=value conninfo for a client of pgmux. The defaults log in by
  // the drop-in rule: the upstream's own user and password.
  std::string conninfo(const std::string& user = kScramUser, const std::string& dbname = "app",
                       const std::string& password = kScramPassword) const;
  // The same as a URI, for psql and pgbench.
  std::string url(const std::string& user = kScramUser, const std::string& dbname = "app",
                  const std::string& password = kScramPassword) const;

  // Runs `job` on the proxy's loop thread and waits for it: the only safe
  // way for a test to read the Proxy's state (pool counts) while it runs.
  void on_loop(const std::function<void(proxy::Proxy&)>& job);

  // A pool's counts, read on the loop thread.
  struct PoolCounts {
    size_t waiting = 0, idle = 0, active = 0, opening = 0;
  };
  PoolCounts pool_counts(const std::string& database = kAppDatabase);

 private:
  static void on_async(uv_async_t* handle);
  void run_jobs();

  uv_loop_t loop_{};
  uv_async_t async_{};
  std::mutex jobs_mutex_;
  std::vector<std::function<void()>> jobs_;
  std::unique_ptr<proxy::Proxy> proxy_;
  std::thread thread_;
  uint16_t port_ = 0;
};

// A pg_stat_activity condition that picks pgmux's backends: they log in as
// kScramUser (tests connect directly as that user only when pgmux is not
// running). Not by application_name: pgmux sets each client's on its server.
inline constexpr const char* kPgmuxBackendsWhere =
    "usename = 'app_scram' and backend_type = 'client backend'";
// How many backends pgmux has open on `pg` right now.
int pgmux_backends(const PgServer& pg);

}  // namespace pgmux::testing
