// /metrics, /healthz and /readyz end to end: libpq load through pgmux,
// promtool's linter on the exposition, a real Prometheus scraping pgmux, and
// a scraper that stalls.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;

PgServer& metrics_pg() {
  static PgServer pg;
  return pg;
}

// At most one server, so that concurrent clients queue for it.
config::Config metrics_config(const PgServer& pg) {
  config::Config config = make_small_config(pg, 1);
  config.metrics_host = "127.0.0.1";
  config.metrics_port = 0;
  return config;
}

// A connected socket, or -1 (nothing listens yet).
int try_connect(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

int connect_to(uint16_t port) {
  const int fd = try_connect(port);
  REQUIRE(fd >= 0);
  return fd;
}

struct HttpResult {
  int status = 0;
  std::string body;
};

// Sends `request` as is and reads the response to EOF; status 0 when
// nothing listens.
HttpResult http_raw(uint16_t port, const std::string& request) {
  const int fd = try_connect(port);
  if (fd < 0) return {};
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string response;
  char chunk[16384];
  for (ssize_t n; (n = ::recv(fd, chunk, sizeof chunk, 0)) > 0;) response.append(chunk, n);
  ::close(fd);
  HttpResult result;
  if (response.rfind("HTTP/1.1 ", 0) == 0) result.status = std::atoi(response.c_str() + 9);
  const size_t body = response.find("\r\n\r\n");
  if (body != std::string::npos) result.body = response.substr(body + 4);
  return result;
}

HttpResult http_get(uint16_t port, const std::string& target) {
  return http_raw(port,
                  "GET " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

// The value of the sample whose line starts with `series` followed by a space.
double sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  FAIL("no sample " << series);
  return 0;
}

// `clients` threads, each running `each` transactions of pg_sleep(sleep_s)
// through pgmux; with one server they queue for it.
void run_load(ProxyRunner& proxy, int clients, int each, double sleep_s) {
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&] {
      Conn conn(proxy.conninfo());
      REQUIRE(conn.ok());
      for (int i = 0; i < each; ++i) conn.value("select pg_sleep(" + std::to_string(sleep_s) + ")");
    });
  }
  for (auto& thread : threads) thread.join();
}

std::filesystem::path temp_dir(const std::string& name) {
  std::string pattern =
      (std::filesystem::temp_directory_path() / ("pgmux-" + name + "-XXXXXX")).string();
  REQUIRE(mkdtemp(pattern.data()) != nullptr);
  return pattern;
}

// promtool's linter over a scrape: exit 0 and nothing printed.
void check_with_promtool(const std::string& metrics) {
  const std::filesystem::path dir = temp_dir("promtool");
  const std::string file = (dir / "metrics.txt").string();
  std::ofstream(file) << metrics;
  const CommandResult r = run_command("/usr/bin/promtool check metrics < " + file);
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.empty());
  std::filesystem::remove_all(dir);
}

TEST_CASE("metrics: /metrics after queued load passes promtool and counts what ran") {
  ProxyRunner proxy(metrics_config(metrics_pg()));
  uint16_t port = 0;
  proxy.on_loop([&](proxy::Proxy& p) { port = p.metrics_port(); });
  REQUIRE(port != 0);

  run_load(proxy, 4, 5, 0.02);
  const HttpResult scrape = http_get(port, "/metrics");
  REQUIRE(scrape.status == 200);
  check_with_promtool(scrape.body);
  const std::string& m = scrape.body;
  CHECK(sample(m, "pgmux_up") == 1);
  CHECK(sample(m, "pgmux_transactions_total{database=\"app\"}") >= 20);
  CHECK(sample(m, "pgmux_queries_total{database=\"app\"}") >= 20);
  CHECK(sample(m, "pgmux_server_connects_total{database=\"app\"}") >= 1);
  CHECK(sample(m, "pgmux_received_bytes_total{database=\"app\"}") > 0);
  CHECK(sample(m, "pgmux_server_cap{upstream=\"" + metrics_pg().host() + ":" +
                      std::to_string(metrics_pg().port()) + "\"}") == 1);
  const double assignments = sample(m, "pgmux_server_assignments_total{database=\"app\"}");
  CHECK(assignments >= 20);
  CHECK(sample(m, "pgmux_queue_wait_seconds_count{database=\"app\"}") == assignments);
  // Four clients, one server, 20 ms each: some waited longer than a millisecond.
  CHECK(sample(m, "pgmux_queue_wait_seconds_bucket{database=\"app\",le=\"0.001\"}") < assignments);
  CHECK(sample(m, "pgmux_queue_wait_seconds_sum{database=\"app\"}") > 0.01);
  CHECK(sample(m, "pgmux_transaction_duration_seconds_count{database=\"app\"}") >= 20);
  CHECK(sample(m, "process_resident_memory_bytes") > 0);
  CHECK(sample(m, "process_open_fds") > 0);

  const HttpResult health = http_get(port, "/healthz");
  CHECK(health.status == 200);
  CHECK(health.body == "ok\n");
  const HttpResult ready = http_get(port, "/readyz");
  CHECK(ready.status == 200);
  CHECK(ready.body == "ready\n");
}

TEST_CASE("metrics: other paths 404, other methods 405, an oversized head 431") {
  ProxyRunner proxy(metrics_config(metrics_pg()));
  uint16_t port = 0;
  proxy.on_loop([&](proxy::Proxy& p) { port = p.metrics_port(); });
  CHECK(http_get(port, "/nothing").status == 404);
  CHECK(http_raw(port, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").status == 405);
  CHECK(
      http_raw(port, "GET /metrics HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n").status ==
      431);
  CHECK(http_raw(port, "hello\r\n\r\n").status == 400);
}

TEST_CASE("metrics: an idle pgmux with no server open turns ready by a probe") {
  ProxyRunner proxy(metrics_config(metrics_pg()));  // min_server_connections = 0
  uint16_t port = 0;
  proxy.on_loop([&](proxy::Proxy& p) { port = p.metrics_port(); });
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  HttpResult ready = http_get(port, "/readyz");
  while (ready.status != 200 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // Pacing.
    ready = http_get(port, "/readyz");
  }
  CHECK(ready.status == 200);
  CHECK(proxy.pool_counts().idle == 0);  // No login was needed.
}

TEST_CASE("metrics: /readyz is 503 while the upstream has never been reached") {
  config::Config config = metrics_config(metrics_pg());
  config.databases[0].upstream.port = free_port();  // Nothing listens there.
  ProxyRunner proxy(config);
  uint16_t port = 0;
  proxy.on_loop([&](proxy::Proxy& p) { port = p.metrics_port(); });
  // The first /readyz starts a probe; the probe fails; every answer is 503.
  for (int i = 0; i < 3; ++i) {
    const HttpResult ready = http_get(port, "/readyz");
    CHECK(ready.status == 503);
    CHECK(ready.body.find("not reached yet") != std::string::npos);
  }
  const HttpResult scrape = http_get(port, "/metrics");
  CHECK(scrape.body.find("pgmux_upstream_reached{upstream=\"127.0.0.1:") != std::string::npos);
  CHECK(scrape.body.find("\"} 0\n") != std::string::npos);
  CHECK(http_get(port, "/healthz").status == 200);
}

TEST_CASE("metrics: a scraper that stalls delays neither queries nor other scrapes") {
  ProxyRunner proxy(metrics_config(metrics_pg()));
  uint16_t port = 0;
  proxy.on_loop([&](proxy::Proxy& p) { port = p.metrics_port(); });
  // Half a request, never finished and never read.
  const int stuck = connect_to(port);
  const std::string half = "GET /metr";
  REQUIRE(::send(stuck, half.data(), half.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(half.size()));
  // A full request whose answer is never read.
  const int unread = connect_to(port);
  const std::string full = "GET /metrics HTTP/1.1\r\n\r\n";
  REQUIRE(::send(unread, full.data(), full.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(full.size()));

  const auto started = Clock::now();
  Conn conn(proxy.conninfo());
  REQUIRE(conn.ok());
  CHECK(conn.value("select 1") == "1");
  CHECK(http_get(port, "/metrics").status == 200);
  CHECK(Clock::now() - started < std::chrono::seconds(4));

  // At its deadline (5 s) the stalled connection is closed by pgmux.
  char byte = 0;
  timeval tv{15, 0};
  setsockopt(stuck, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  CHECK(::recv(stuck, &byte, 1, 0) == 0);
  ::close(stuck);
  ::close(unread);
}

// ---- A real Prometheus scraping pgmux ----

std::string url_encode(const std::string& text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The first value of an instant query's vector, or "" when there is none.
std::string query_value(uint16_t port, const std::string& promql) {
  const HttpResult r = http_get(port, "/api/v1/query?query=" + url_encode(promql));
  if (r.status != 200) return "";
  const size_t value = r.body.find("\"value\":[");
  if (value == std::string::npos) return "";
  const size_t open = r.body.find(",\"", value);
  const size_t close = r.body.find('"', open + 2);
  if (open == std::string::npos || close == std::string::npos) return "";
  return r.body.substr(open + 2, close - open - 2);
}

class PrometheusProcess {
 public:
  PrometheusProcess(uint16_t target_port, uint16_t port) : dir_(temp_dir("prometheus")) {
    const std::string config = (dir_ / "prometheus.yml").string();
    std::ofstream(config) << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                          << "scrape_configs:\n  - job_name: pgmux\n    static_configs:\n"
                          << "      - targets: ['127.0.0.1:" << target_port << "']\n";
    const std::string log = (dir_ / "prometheus.log").string();
    // The child must not inherit (and print again) what the parent buffered.
    std::fflush(stdout);
    std::fflush(stderr);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      freopen(log.c_str(), "w", stdout);
      freopen(log.c_str(), "a", stderr);
      const std::string config_arg = "--config.file=" + config;
      const std::string storage_arg = "--storage.tsdb.path=" + (dir_ / "data").string();
      const std::string listen_arg = "--web.listen-address=127.0.0.1:" + std::to_string(port);
      execl("/usr/bin/prometheus", "prometheus", config_arg.c_str(), storage_arg.c_str(),
            listen_arg.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~PrometheusProcess() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    std::filesystem::remove_all(dir_);
  }
  PrometheusProcess(const PrometheusProcess&) = delete;
  PrometheusProcess& operator=(const PrometheusProcess&) = delete;
  std::string log() const {
    std::ifstream in(dir_ / "prometheus.log");
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
};

TEST_CASE("metrics: a real Prometheus scrapes pgmux and answers PromQL on the queue wait") {
  ProxyRunner proxy(metrics_config(metrics_pg()));
  uint16_t metrics_port = 0;
  proxy.on_loop([&](proxy::Proxy& p) { metrics_port = p.metrics_port(); });
  const uint16_t prometheus_port = free_port();
  PrometheusProcess prometheus(metrics_port, prometheus_port);

  // Four clients, one server, 50 ms per transaction: most wait 50-150 ms.
  run_load(proxy, 4, 5, 0.05);
  uint64_t assignments = 0;
  proxy.on_loop([&](proxy::Proxy& p) {
    assignments = p.find_pool("app")->stats().totals.server_assignment_count;
  });
  REQUIRE(assignments >= 20);

  const std::string count_query = "sum(pgmux_queue_wait_seconds_count{database=\"app\"})";
  const std::string p99_query =
      "histogram_quantile(0.99, sum by (le) (pgmux_queue_wait_seconds_bucket{database=\"app\"}))";
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  std::string count;
  while (Clock::now() < deadline) {
    count = query_value(prometheus_port, count_query);
    if (count == std::to_string(assignments)) break;
    // Pacing, not synchronisation: Prometheus scrapes once a second.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  INFO(prometheus.log());
  CHECK(count == std::to_string(assignments));
  const std::string p99 = query_value(prometheus_port, p99_query);
  INFO("p99 = " << p99);
  REQUIRE(!p99.empty());
  CHECK(std::stod(p99) > 0.025);  // Above the 25 ms bound: clients waited a whole transaction.
  CHECK(query_value(prometheus_port, "up{job=\"pgmux\"}") == "1");
}

}  // namespace
}  // namespace pgmux::testing
