// What real applications send that the simpler tests do not: requests of
// any size while every server is busy, and COPY that the server ends early.
// Each test has its own PostgreSQL, since they fill its pool.
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "proxy/client_conn.h"
#include "proxy/pool.h"
#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Runs `send` (a request of `bytes` bytes) on `client` in a thread, since
// libpq blocks in send() while pgmux reads no further. Returns the answer.
struct Request {
  std::string answer;
  std::string error;
  std::thread thread;
};

void start_request(Request& request, Conn& client, const std::string& text, bool as_bind) {
  request.thread = std::thread([&request, &client, &text, as_bind] {
    PGresult* r = nullptr;
    if (as_bind) {
      const char* values[] = {text.c_str()};
      r = PQexecParams(client.raw, "select length($1::text)", 1, nullptr, values, nullptr, nullptr,
                       0);
    } else {
      r = PQexec(client.raw, text.c_str());
    }
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      request.answer = PQgetvalue(r, 0, 0);
    } else {
      request.error = PQresultErrorMessage(r);
      if (request.error.empty()) request.error = PQerrorMessage(client.raw);
    }
    PQclear(r);
  });
}

// A Query of about `size` bytes whose answer is its own length.
std::string query_of_size(size_t size) {
  const std::string head = "select length('";
  const std::string tail = "')";
  return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

// Polls until the client at the head of the wait queue has stopped reading
// its socket; false if it has not within 10 s.
bool waiting_client_stops_reading(ProxyRunner& proxy) {
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline) {
    bool stopped = false;
    proxy.on_loop([&](proxy::Proxy& p) {
      proxy::Pool* pool = p.find_pool(kAppDatabase);
      auto* client = static_cast<proxy::ClientConn*>(pool ? pool->first_waiting() : nullptr);
      stopped = client != nullptr && !client->stream().reading();
    });
    if (stopped) return true;
  }
  return false;
}

// With the only server held by another client, `client` sends requests of
// each size (as a Query, then as a Bind parameter); each must wait, then run.
void requests_while_queued(ProxyRunner& proxy, const std::string& conninfo,
                           const std::vector<size_t>& sizes) {
  Conn holder(proxy.conninfo());
  Conn client(conninfo);
  REQUIRE(holder.ok());
  REQUIRE(client.ok());
  for (const bool as_bind : {false, true}) {
    for (const size_t size : sizes) {
      CAPTURE(as_bind);
      CAPTURE(size);
      holder.value("begin");
      holder.value("select 1");  // The only server is now the holder's.
      const std::string text = as_bind ? std::string(size, 'y') : query_of_size(size);
      Request request;
      start_request(request, client, text, as_bind);
      auto counts = wait_for_counts(proxy, [](const auto& c) { return c.waiting == 1; });
      CHECK(counts.waiting == 1);
      if (size > 64 * 1024) {
        // Memory stays bounded by reading no further: once its buffer is
        // full, pgmux stops reading the waiting client's socket (and, over
        // TLS, stops taking ciphertext it cannot decrypt into the buffer).
        CHECK(waiting_client_stops_reading(proxy));
      }
      holder.value("commit");
      request.thread.join();
      CHECK(request.error == "");
      const size_t expected = as_bind ? size : size - std::string("select length('')").size();
      CHECK(request.answer == std::to_string(expected));
      REQUIRE(client.ok());
      CHECK(client.value("select 2") == "2");
    }
  }
}

TEST_CASE("a request of 16 KB to 64 MiB sent while every server is busy is served, not dropped") {
  PgServer pg;
  config::Config config = make_small_config(pg, 1);
  config.query_wait_timeout = 60s;
  const TestPki& pki = test_pki();
  config.client_tls = config::ClientTls::kAllow;
  config.client_tls_cert_file = pki.server_cert;
  config.client_tls_key_file = pki.server_key;
  ProxyRunner proxy(config);
  SUBCASE("plaintext") {
    requests_while_queued(proxy, proxy.conninfo(),
                          {12 * 1024, 16 * 1024, 16 * 1024 + 1, 20 * 1024, 64 * 1024, 1024 * 1024,
                           20u << 20, 64u << 20});
  }
  SUBCASE("TLS") {
    // Decrypted bytes wait in the TLS session, not in pgmux's buffer: the
    // stream must stop reading the socket all the same.
    requests_while_queued(proxy, proxy.conninfo() + " sslmode=require",
                          {16 * 1024 + 1, 1024 * 1024, 64u << 20});
  }
}

TEST_CASE("a 20 MiB Bind on a cold pool waits for the server's login and is served") {
  PgServer pg;
  config::Config config = make_small_config(pg, 2);
  ProxyRunner proxy(config);
  Conn client(proxy.conninfo());
  REQUIRE(client.ok());
  const std::string text(20u << 20, 'z');
  Request request;
  start_request(request, client, text, /*as_bind=*/true);
  request.thread.join();
  CHECK(request.error == "");
  CHECK(request.answer == std::to_string(text.size()));
  CHECK(client.value("select 3") == "3");
}

TEST_CASE("pgjdbc: executeBatch with prepareThreshold=1 on 16 connections sharing 15 servers") {
  // Each batch is about 150 KB of Bind and Execute; one connection at a
  // time waits for a server with its whole batch on the way.
  PgServer pg;
  config::Config config = make_small_config(pg, 15);
  config.query_wait_timeout = 60s;
  ProxyRunner proxy(config);
  CommandResult r =
      run_command("java -cp /usr/share/java/postgresql.jar " + std::string(PGMUX_SOURCE_DIR) +
                  "/tests/drivers/PgjdbcBatch.java '" + proxy.url() + "' 16");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("pgjdbc: 76800 rows, 0 errors") != std::string::npos);
}

TEST_CASE("psycopg: a SET that its transaction undoes, and SET LOCAL, never follow the client") {
  // 3 servers for the checking client and 6 busy others: its later
  // transactions run on servers other than the one that ran the SET.
  PgServer pg;
  config::Config config = make_small_config(pg, 3);
  config.query_wait_timeout = 60s;
  ProxyRunner proxy(config);
  CommandResult r = run_command(std::string("/usr/bin/python3 ") + PGMUX_SOURCE_DIR +
                                "/tests/drivers/psycopg_settings.py '" + proxy.url() + "'");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("psycopg-settings: 78 checks, 0 errors") != std::string::npos);
}

}  // namespace
}  // namespace pgmux::testing
