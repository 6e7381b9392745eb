#include "tests/proxy_fixture.h"

#include <doctest/doctest.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <future>
#include <stdexcept>

#include "proxy/log.h"

namespace pgmux::testing {

config::Config make_config(const PgServer& pg, const std::string& user,
                           const std::string& password) {
  config::Config config;
  config.listen_host = "127.0.0.1";
  config.listen_port = 0;
  config::Database database;
  database.name = kAppDatabase;
  database.upstream.host = pg.host();
  database.upstream.port = pg.port();
  database.upstream.user = user;
  database.upstream.password = password;
  database.upstream.dbname = kAppDatabase;
  database.upstream.application_name = "pgmux";
  config.databases.push_back(database);
  const char* level = std::getenv("PGMUX_TEST_LOG_LEVEL");
  config.log_level = level != nullptr ? level : "warn";
  return config;
}

ProxyRunner::ProxyRunner(config::Config config) {
  // PGMUX_TEST_LOG_FILE sends pgmux's log there (scripts/test greps it for
  // secrets afterwards); otherwise it goes to stderr.
  static const bool file_sink = [] {
    const char* path = std::getenv("PGMUX_TEST_LOG_FILE");
    if (path == nullptr || *path == '\0') return false;
    spdlog::set_default_logger(spdlog::basic_logger_mt("pgmux", path, /*truncate=*/true));
    spdlog::flush_every(std::chrono::seconds(1));
    return true;
  }();
  (void)file_sink;
  proxy::init_logging(config.log_level);
  if (uv_loop_init(&loop_) != 0) throw std::runtime_error("uv_loop_init failed");
  proxy_ = std::make_unique<proxy::Proxy>(std::move(config), &loop_);
  auto started = proxy_->start();
  if (!started) throw std::runtime_error("pgmux did not start: " + started.error().message);
  port_ = proxy_->port();
  async_.data = this;
  if (uv_async_init(&loop_, &async_, &ProxyRunner::on_async) != 0) {
    throw std::runtime_error("uv_async_init failed");
  }
  thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
}

void ProxyRunner::on_async(uv_async_t* handle) {
  static_cast<ProxyRunner*>(handle->data)->run_jobs();
}

void ProxyRunner::run_jobs() {
  std::vector<std::function<void()>> jobs;
  {
    std::lock_guard<std::mutex> lock(jobs_mutex_);
    jobs.swap(jobs_);
  }
  for (auto& job : jobs) job();
}

void ProxyRunner::on_loop(const std::function<void(proxy::Proxy&)>& job) {
  std::promise<void> done;
  {
    std::lock_guard<std::mutex> lock(jobs_mutex_);
    jobs_.emplace_back([&] {
      job(*proxy_);
      done.set_value();
    });
  }
  uv_async_send(&async_);
  done.get_future().wait();
}

ProxyRunner::PoolCounts ProxyRunner::pool_counts(const std::string& database) {
  PoolCounts counts;
  bool found = false;
  on_loop([&](proxy::Proxy& proxy) {
    proxy::Pool* pool = proxy.find_pool(database);
    if (pool == nullptr) return;
    found = true;
    counts = PoolCounts{pool->waiting_count(), pool->idle_count(), pool->active_count(),
                        pool->opening_count()};
  });
  // Thrown here, not on the loop's thread.
  if (!found) throw std::runtime_error("pgmux has no pool " + database);
  return counts;
}

ProxyRunner::~ProxyRunner() {
  // The async handle would keep the loop running: closed on the loop first.
  on_loop([this](proxy::Proxy&) { uv_close(reinterpret_cast<uv_handle_t*>(&async_), nullptr); });
  proxy_->request_stop();
  thread_.join();
  proxy_.reset();
  const int rc = uv_loop_close(&loop_);
  CHECK_MESSAGE(rc == 0, "the event loop still had open handles after stop");
}

std::string ProxyRunner::conninfo(const std::string& user, const std::string& dbname,
                                  const std::string& password) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + user + " dbname=" + dbname +
         " password=" + password + " sslmode=disable";
}

std::string ProxyRunner::url(const std::string& user, const std::string& dbname,
                             const std::string& password) const {
  return "postgresql://" + user + ":" + password + "@127.0.0.1:" + std::to_string(port_) + "/" +
         dbname + "?sslmode=disable";
}

config::Config make_small_config(const PgServer& pg, uint32_t servers) {
  config::Config config = make_config(pg);
  config.max_server_connections = servers;
  config.min_server_connections = 0;
  return config;
}

int pgmux_backends(const PgServer& pg) {
  return std::stoi(pg.query_value(std::string("select count(*) from pg_stat_activity where ") +
                                  kPgmuxBackendsWhere));
}

}  // namespace pgmux::testing
