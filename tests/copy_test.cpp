// COPY through pgmux: FROM STDIN and TO STDOUT, text and binary, a few
// bytes to 50 MB, the server failing at the start, in the middle or at the
// end, and the client sending CopyFail. After each, the client's connection
// runs a query, and the one server is reused (same backend) by another
// client with no leftover state. The server may end a COPY FROM while the
// client is still streaming: what the client sends after that must be
// dropped, as PostgreSQL itself drops it, never framed as a new request.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/libpq_conn.h"
#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"
#include "tests/raw_client.h"

namespace pgmux::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

enum class Fail { kNone, kStart, kMiddle, kEnd, kCopyFail };

const char* name_of(Fail fail) {
  switch (fail) {
    case Fail::kNone:
      return "none";
    case Fail::kStart:
      return "start";
    case Fail::kMiddle:
      return "middle";
    case Fail::kEnd:
      return "end";
    case Fail::kCopyFail:
      return "CopyFail";
  }
  return "?";
}

// The rows of a COPY FROM of about `bytes` bytes into copy_in (id int,
// v text), in text or binary format, with a row the server rejects at the
// place `fail` says.
struct CopyData {
  std::string bytes;
  size_t rows = 0;
};

void put_u16(std::string& out, uint16_t v) {
  v = htons(v);
  out.append(reinterpret_cast<const char*>(&v), 2);
}
void put_u32(std::string& out, uint32_t v) {
  v = htonl(v);
  out.append(reinterpret_cast<const char*>(&v), 4);
}

CopyData make_rows(size_t bytes, bool binary, Fail fail) {
  const std::string value(90, 'v');
  const size_t row_size = binary ? 2 + 4 + 4 + 4 + value.size() : 8 + value.size();
  const size_t rows = std::max<size_t>(3, bytes / row_size);
  size_t bad = rows;  // None.
  if (fail == Fail::kStart) bad = 0;
  if (fail == Fail::kMiddle) bad = rows / 2;
  if (fail == Fail::kEnd) bad = rows - 1;
  CopyData out;
  out.rows = rows;
  out.bytes.reserve(rows * row_size + 32);
  if (binary) out.bytes.append("PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0", 19);
  for (size_t i = 0; i < rows; ++i) {
    if (binary) {
      // The bad row has three fields for two columns: 22P04.
      put_u16(out.bytes, i == bad ? 3 : 2);
      put_u32(out.bytes, 4);
      put_u32(out.bytes, static_cast<uint32_t>(i));
      put_u32(out.bytes, static_cast<uint32_t>(value.size()));
      out.bytes += value;
      if (i == bad) put_u32(out.bytes, 0xffffffff);  // NULL.
    } else {
      out.bytes += i == bad ? std::string("oops") : std::to_string(i);
      out.bytes += '\t';
      out.bytes += value;
      out.bytes += '\n';
    }
  }
  if (binary) put_u16(out.bytes, 0xffff);
  return out;
}

// Streams `data` as CopyData messages of varied sizes (1 byte to 64 KB),
// then ends with CopyDone or CopyFail. Returns the result's SQLSTATE ("" on
// success) and the row count in `rows`.
std::string copy_in(Conn& client, const std::string& sql, bool extended, const CopyData& data,
                    bool copy_fail, uint64_t seed, std::string* rows) {
  PGresult* r =
      extended ? PQexecParams(client.raw, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)
               : PQexec(client.raw, sql.c_str());
  REQUIRE(PQresultStatus(r) == PGRES_COPY_IN);
  PQclear(r);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> chunk(1, 64 * 1024);
  for (size_t offset = 0; offset < data.bytes.size();) {
    const size_t n = std::min(chunk(rng), data.bytes.size() - offset);
    // libpq stops (-1) once it has seen the server end the COPY.
    if (PQputCopyData(client.raw, data.bytes.data() + offset, static_cast<int>(n)) != 1) break;
    offset += n;
  }
  PQputCopyEnd(client.raw, copy_fail ? "the client gave up" : nullptr);
  std::string sqlstate;
  while ((r = PQgetResult(client.raw)) != nullptr) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR && sqlstate.empty()) {
      const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      sqlstate = code != nullptr ? code : "?";
    } else if (PQresultStatus(r) == PGRES_COMMAND_OK && rows != nullptr) {
      *rows = PQcmdTuples(r);
    }
    PQclear(r);
  }
  return sqlstate;
}

// COPY TO STDOUT of about `bytes` bytes; the server fails (division by
// zero) at the row `fail` says. Returns the SQLSTATE and the bytes received.
std::string copy_out(Conn& client, size_t bytes, bool binary, bool extended, Fail fail,
                     size_t* received) {
  const size_t rows = std::max<size_t>(3, bytes / 100);
  size_t bad = rows + 1;
  if (fail == Fail::kStart) bad = 1;
  if (fail == Fail::kMiddle) bad = rows / 2;
  if (fail == Fail::kEnd) bad = rows;
  const std::string sql = "copy (select g, 1 / (g - " + std::to_string(bad) +
                          "), repeat('x', 90) from generate_series(1, " + std::to_string(rows) +
                          ") g) to stdout" + (binary ? " (format binary)" : "");
  PGresult* r =
      extended ? PQexecParams(client.raw, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 0)
               : PQexec(client.raw, sql.c_str());
  REQUIRE(PQresultStatus(r) == PGRES_COPY_OUT);
  PQclear(r);
  *received = 0;
  char* buffer = nullptr;
  int n;
  while ((n = PQgetCopyData(client.raw, &buffer, 0)) > 0) {
    *received += static_cast<size_t>(n);
    PQfreemem(buffer);
  }
  std::string sqlstate;
  while ((r = PQgetResult(client.raw)) != nullptr) {
    if (PQresultStatus(r) == PGRES_FATAL_ERROR && sqlstate.empty()) {
      const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      sqlstate = code != nullptr ? code : "?";
    }
    PQclear(r);
  }
  return sqlstate;
}

// After a COPY: the client's connection works, and another client gets the
// same single server with nothing left over on it.
void check_after(Conn& client, Conn& other, const std::string& backend, ProxyRunner& proxy) {
  CHECK(client.value("select 'after'") == "after");
  CHECK(other.value("select pg_backend_pid()::text") == backend);
  CHECK(other.value("select count(*) from pg_prepared_statements") == "0");
  CHECK(other.value("select current_setting('transaction_isolation')") == "read committed");
  auto counts = proxy.pool_counts();
  CHECK(counts.active == 0);
  CHECK(counts.idle == 1);
  CHECK(counts.waiting == 0);
}

TEST_CASE("COPY matrix: in and out, text and binary, a few bytes to 50 MB, failing anywhere") {
  PgServer pg;
  config::Config config = make_small_config(pg, 1);
  ProxyRunner proxy(config);
  Conn client(proxy.conninfo());
  Conn other(proxy.conninfo());
  REQUIRE(client.ok());
  REQUIRE(other.ok());
  client.value("create table copy_in (id int, v text)");
  const std::string backend = other.value("select pg_backend_pid()::text");

  struct Case {
    size_t bytes;
    bool binary;
  };
  const Case cases[] = {{20, false},     {20, true},         {1 << 20, false},
                        {1 << 20, true}, {50u << 20, false}, {50u << 20, true}};
  uint64_t seed = 1;
  for (const Case& c : cases) {
    const bool big = c.bytes > (1 << 20);
    for (const bool extended : {false, true}) {
      // 50 MB runs every failure once, in the simple protocol.
      if (big && extended) continue;
      for (const Fail fail :
           {Fail::kNone, Fail::kStart, Fail::kMiddle, Fail::kEnd, Fail::kCopyFail}) {
        CAPTURE(c.bytes);
        CAPTURE(c.binary);
        CAPTURE(extended);
        const std::string failure = name_of(fail);
        CAPTURE(failure);
        // COPY FROM STDIN.
        client.value("truncate copy_in");
        const CopyData data =
            make_rows(c.bytes, c.binary, fail == Fail::kCopyFail ? Fail::kNone : fail);
        std::string rows;
        const std::string sql =
            std::string("copy copy_in from stdin") + (c.binary ? " (format binary)" : "");
        const std::string got =
            copy_in(client, sql, extended, data, fail == Fail::kCopyFail, seed++, &rows);
        if (fail == Fail::kNone) {
          CHECK(got == "");
          CHECK(rows == std::to_string(data.rows));
          CHECK(client.value("select count(*) from copy_in") == std::to_string(data.rows));
        } else if (fail == Fail::kCopyFail) {
          CHECK(got == "57014");
          CHECK(client.value("select count(*) from copy_in") == "0");
        } else {
          CHECK(got == (c.binary ? "22P04" : "22P02"));
          CHECK(client.value("select count(*) from copy_in") == "0");
        }
        check_after(client, other, backend, proxy);

        // COPY TO STDOUT (the client cannot fail it).
        if (fail == Fail::kCopyFail) continue;
        size_t received = 0;
        const std::string out = copy_out(client, c.bytes, c.binary, extended, fail, &received);
        CHECK(out == (fail == Fail::kNone ? "" : "22012"));
        if (fail == Fail::kNone) CHECK(received >= c.bytes / 2);
        check_after(client, other, backend, proxy);
      }
    }
  }
}

void add_copy_data(protocol::Bytes& out, std::string_view data) {
  out += 'd';
  const uint32_t length = htonl(static_cast<uint32_t>(data.size() + 4));
  out.append(reinterpret_cast<const char*>(&length), 4);
  out += data;
}

TEST_CASE("a client still streaming COPY data after the server's error: dropped, then served") {
  // The server rejects the first row and answers at once (ErrorResponse,
  // ReadyForQuery); the client has already sent 3 MB more, in CopyData
  // messages of every size up to 1 MB, then CopyDone and a Query. Another
  // client is queued for the one server meanwhile. The leftover COPY
  // messages must not reach that client's transaction, nor be framed as
  // requests: the copying client gets its error, then its query's answer.
  PgServer pg;
  config::Config config = make_small_config(pg, 1);
  config.query_wait_timeout = 60s;
  config.auth_type = config::AuthType::kTrust;  // RawClient speaks no SCRAM.
  ProxyRunner proxy(config);
  Conn setup(proxy.conninfo());
  REQUIRE(setup.ok());
  setup.value("create table copy_in (id int, v text)");
  const std::string backend = setup.value("select pg_backend_pid()::text");

  for (int round = 0; round < 4; ++round) {
    CAPTURE(round);
    RawClient copier(proxy.port());
    protocol::Bytes start;
    protocol::append_query(start, "copy copy_in from stdin");
    copier.send_only(start);
    CHECK(copier.read_at_least(1));  // CopyInResponse (the server holds it now).

    // A second client waits for the server in the meantime.
    Conn waiter(proxy.conninfo());
    REQUIRE(waiter.ok());
    std::string waited;
    std::thread waiting([&] { waited = waiter.value("select 'served'"); });
    ProxyRunner::PoolCounts counts;
    const auto deadline = Clock::now() + 10s;
    while ((counts = proxy.pool_counts()).waiting != 1 && Clock::now() < deadline) {
    }
    CHECK(counts.waiting == 1);

    std::mt19937_64 rng(static_cast<uint64_t>(round));
    std::uniform_int_distribution<size_t> size(1, round % 2 == 0 ? 1024 * 1024 : 20000);
    protocol::Bytes stream;
    add_copy_data(stream, "bad row\tv\n");
    size_t sent = 0;
    while (sent < 3u << 20) {
      const size_t n = size(rng);
      add_copy_data(stream, std::string(n, 'x'));
      sent += n;
    }
    stream += 'c';
    const uint32_t four = htonl(4);
    stream.append(reinterpret_cast<const char*>(&four), 4);
    protocol::append_query(stream, "select 42");
    std::string sqlstate;
    // The error and ReadyForQuery of the COPY come first.
    std::thread sender([&] { copier.send_only(stream); });
    const std::string types = copier.round_trip({}, &sqlstate);
    sender.join();
    CHECK(types.back() == 'Z');
    CHECK(sqlstate == "22P02");
    // Then the answer to select 42, after the waiter had its turn.
    std::string second_state;
    const std::string second = copier.round_trip({}, &second_state);
    CHECK(second == "TDCZ");
    CHECK(second_state == "");
    waiting.join();
    CHECK(waited == "served");
    CHECK(setup.value("select pg_backend_pid()::text") == backend);
    CHECK(setup.value("select count(*) from copy_in") == "0");
  }
}

TEST_CASE("psycopg 3: ten autocommit COPYs rejected early while other clients take the servers") {
  PgServer pg;
  config::Config config = make_small_config(pg, 4);
  config.query_wait_timeout = 60s;
  ProxyRunner proxy(config);
  CommandResult r = run_command(std::string("/usr/bin/python3 ") + PGMUX_SOURCE_DIR +
                                "/tests/drivers/psycopg_copy.py '" + proxy.url() + "'");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("psycopg-copy: 60 copies, 0 errors") != std::string::npos);
}

}  // namespace
}  // namespace pgmux::testing
