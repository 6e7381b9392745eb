// The set-up of proxy/link_test.cpp: message builders, fake connections on
// loopback TCP pairs, a Pool with a fake host, and a loop driven until a
// condition holds. Included by that one file only.
#pragma once

#include <doctest/doctest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "protocol/extended.h"
#include "protocol/messages.h"
#include "proxy/link.h"
#include "proxy/pool.h"

namespace pgmux::proxy::link_test {

constexpr size_t kBlockSize = 4096;
constexpr uint64_t kWatchdogMs = 10000;

// ---- Messages the protocol library has no builder for ----------------------

inline std::string message(char type, std::string_view body) {
  const auto length = static_cast<uint32_t>(body.size() + 4);
  std::string out(1, type);
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((length >> shift) & 0xff));
  out.append(body);
  return out;
}

inline std::string command_complete(std::string_view tag) {
  return message('C', std::string(tag) + '\0');
}

// One int4 column named "?column?".
inline std::string row_description() {
  const std::string body("\0\x01?column?\0\0\0\0\0\0\0\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0", 27);
  return message('T', body);
}

// What `append(out)` appends to an empty buffer.
template <class Append>
inline std::string built(Append append) {
  protocol::Bytes out;
  append(out);
  return out;
}
using protocol::Bytes;

inline std::string data_row(std::string_view v) {
  return built([&](Bytes& o) { protocol::append_data_row(o, {v}); });
}
// Bind of `statement` to the unnamed portal, no parameters, text results.
inline std::string bind(std::string_view statement) {
  return built([&](Bytes& o) { protocol::append_bind_header(o, "", statement, 6); }) +
         std::string(6, '\0');
}
inline std::string execute() { return message('E', std::string(5, '\0')); }
inline std::string query(std::string_view sql) {
  return built([&](Bytes& o) { protocol::append_query(o, sql); });
}
inline std::string parse(std::string_view name, std::string_view sql) {
  return built([&](Bytes& o) { protocol::append_parse(o, name, sql, 0, {}); });
}
inline std::string sync() { return built(protocol::append_sync); }
inline std::string ready(char status) {
  return built([&](Bytes& o) { protocol::append_ready_for_query(o, status); });
}
inline std::string parse_complete() { return built(protocol::append_parse_complete); }
inline std::string bind_complete() { return built(protocol::append_bind_complete); }
inline std::string marker() { return query("-- marker"); }

// Bytes as text a failed CHECK can show: \xNN for anything unprintable.
inline std::string printable(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    const auto b = static_cast<uint8_t>(c);
    if (b >= 0x20 && b < 0x7f && b != '\\') {
      out.push_back(c);
    } else {
      out += "\\x";
      out.push_back(kHex[b >> 4]);
      out.push_back(kHex[b & 0xf]);
    }
  }
  return out;
}

// Checks that `end` of fixture `f` receives exactly `expected`.
#define CHECK_RECEIVED(f, end, expected)                               \
  do {                                                                 \
    const std::string expected_ = (expected);                          \
    CHECK((f).await((end), expected_.size()) == printable(expected_)); \
  } while (false)

// ---- The test's ends, and the fake connections ---------------------------

// An end the test holds (the application, or PostgreSQL): keeps every byte.
struct End final : StreamEvents {
  explicit End(BlockPool& blocks) : stream(*this, blocks) {}
  void on_readable(Stream& s) override {
    const std::span<const uint8_t> bytes = s.input().unparsed();
    received.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    s.input().consume(bytes.size());
  }
  void on_eof(Stream& /*stream*/, int /*status*/) override {}
  void on_lent_write_done(Stream& /*lender*/) override {}
  void on_closed(Stream& /*stream*/) override {}
  void send(const std::string& bytes) { stream.write_owned(bytes); }

  Stream stream;
  std::string received;
};

// The client connection as ClientConn would be while paired.
class FakeClient final : public LinkClient, public StreamEvents {
 public:
  FakeClient(BlockPool& blocks, Pool& pool, Link& link)
      : stream_(*this, blocks), pool_(pool), link_(link) {}

  Stream& stream() override { return stream_; }
  const std::string& tag() const override { return tag_; }
  ClientStatements* statements(bool create) override {
    if (!statements_ && create)
      statements_ = std::make_unique<ClientStatements>(pool_.statements());
    return statements_.get();
  }
  ParamOverrides& overrides() override { return overrides_; }
  // As ClientConn: the connection closes, and its server hears on the way.
  void fail(std::string_view sqlstate, std::string_view /*message*/,
            std::string_view /*hint*/) override {
    failures.emplace_back(sqlstate);
    depart();
  }
  void close(std::string_view reason) override {
    closes.emplace_back(reason);
    depart();
  }
  void on_server_lost() override { ++servers_lost; }

  void on_readable(Stream& /*stream*/) override {
    if (paired()) link_.on_client_readable();
  }
  void on_eof(Stream& /*stream*/, int /*status*/) override {}
  void on_lent_write_done(Stream& /*lender*/) override {
    stream_.input().mark_sent();
    if (paired()) link_.on_client_write_done();
  }
  void on_closed(Stream& /*stream*/) override {}

  std::vector<std::string> failures;
  std::vector<std::string> closes;
  int servers_lost = 0;

 private:
  bool paired() const { return link_.client() == this; }
  void depart() {
    if (paired()) link_.on_client_departed();
  }

  Stream stream_;
  Pool& pool_;
  Link& link_;
  std::string tag_ = "C-test";
  std::unique_ptr<ClientStatements> statements_;
  ParamOverrides overrides_;
};

// The server connection as ServerConn would be; release and close end the
// Link as Pool::release (detach) and ServerConn::close do.
class FakeServer final : public LinkServer, public StreamEvents {
 public:
  FakeServer(BlockPool& blocks, Pool& pool, size_t capacity)
      : stream_(*this, blocks), statements_(pool.statements(), capacity) {}

  Stream& stream() override { return stream_; }
  const std::string& tag() const override { return tag_; }
  ServerStatements& statements() override { return statements_; }
  ParamOverrides& overrides() override { return overrides_; }
  void release() override {
    ++released;
    clean_at_release = link->clean();
    link->end();
  }
  void close(const char* reason) override {
    closes.emplace_back(reason);
    link->on_server_closing();
  }

  void on_readable(Stream& /*stream*/) override {
    if (link->active()) link->on_server_readable();
  }
  void on_eof(Stream& /*stream*/, int /*status*/) override {}
  void on_lent_write_done(Stream& /*lender*/) override {
    stream_.input().mark_sent();
    if (link->active()) link->on_server_write_done();
  }
  void on_closed(Stream& /*stream*/) override {}

  Link* link = nullptr;
  int released = 0;
  bool clean_at_release = false;
  std::vector<std::string> closes;

 private:
  Stream stream_;
  std::string tag_ = "S-test";
  ServerStatements statements_;
  ParamOverrides overrides_;
};

class FakeHost final : public PoolHost {
 public:
  explicit FakeHost(const config::Config& config) : config_(config) {}
  TimeMs now() const override { return 1000; }
  std::mt19937_64& rng() override { return rng_; }
  const config::Config& config() const override { return config_; }
  bool stopping() const override { return false; }
  void open_server(Pool& /*pool*/) override {}
  void probe(Pool& /*pool*/) override {}

 private:
  const config::Config& config_;
  std::mt19937_64 rng_{42};
};

// The application's end and pgmux's client connection.
struct ClientPair {
  ClientPair(BlockPool& blocks, Pool& pool, Link& link) : app(blocks), conn(blocks, pool, link) {}
  End app;
  FakeClient conn;
};

// Everything one test needs, on `loop`: the pool, the server pair, the
// Link, and client pairs on demand. Closes every handle before it is freed.
class Fixture {
 public:
  explicit Fixture(uv_loop_t* loop) : loop_(loop) {
    server.link = &link;
    REQUIRE(uv_tcp_init(loop_, &listener_) == 0);
    listener_.data = this;
    sockaddr_in any{};
    uv_ip4_addr("127.0.0.1", 0, &any);
    REQUIRE(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&any), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 8, &Fixture::on_connection) == 0);
    int length = sizeof address_;
    REQUIRE(uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&address_), &length) == 0);
    REQUIRE(uv_timer_init(loop_, &watchdog_) == 0);
    watchdog_.data = this;
    connect_req_.data = this;
    connect(server.stream(), pg.stream);
  }

  ~Fixture() {
    for (auto& c : clients_) {
      c->conn.stream().close();
      c->app.stream.close();
    }
    server.stream().close();
    pg.stream.close();
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
    uv_run(loop_, UV_RUN_DEFAULT);
  }
  Fixture(const Fixture&) = delete;
  Fixture& operator=(const Fixture&) = delete;

  // A connected client pair, not paired with the server.
  ClientPair& add_client() {
    clients_.push_back(std::make_unique<ClientPair>(blocks_, pool, link));
    ClientPair& c = *clients_.back();
    connect(c.conn.stream(), c.app.stream);
    return c;
  }

  // Runs the loop until pred() holds or the watchdog fires; returns pred().
  template <class Pred>
  bool run_until(Pred pred) {
    timed_out_ = false;
    uv_timer_start(&watchdog_, &Fixture::on_watchdog, kWatchdogMs, 0);
    while (!pred() && !timed_out_) uv_run(loop_, UV_RUN_ONCE);
    uv_timer_stop(&watchdog_);
    return pred();
  }

  // Runs the loop until `end` holds at least `size` bytes (or the watchdog
  // fired); returns what it holds, with unprintable bytes escaped.
  std::string await(const End& end, size_t size) {
    run_until([&] { return end.received.size() >= size; });
    return printable(end.received);
  }

  // A marker written to `from` now arrives right after whatever `from` sent
  // before it: returns what `end` holds once the marker is in.
  std::string await_marker(Stream& from, const End& end) {
    from.write_owned(marker());
    return await(end, end.received.size() + marker().size());
  }

 private:
  BlockPool blocks_{kBlockSize};

 public:
  config::Config config;
  config::Database database;
  FakeHost host{config};
  Upstream upstream{"127.0.0.1:5432", config.max_server_connections, config};
  Pool pool{host, database, upstream};
  protocol::Bytes assembly;
  FakeServer server{blocks_, pool, config.max_prepared_statements};
  End pg{blocks_};
  Link link{server, pool, config, assembly};

 private:
  // Initialises both streams, connects `from` to an accepted `to`, and
  // starts reading on both.
  void connect(Stream& from, Stream& to) {
    REQUIRE(to.init(loop_) == 0);
    REQUIRE(from.init(loop_) == 0);
    accepting_ = &to;
    accepted_ = false;
    connected_ = false;
    REQUIRE(uv_tcp_connect(&connect_req_, from.tcp(), reinterpret_cast<const sockaddr*>(&address_),
                           &Fixture::on_connected) == 0);
    REQUIRE(run_until([&] { return accepted_ && connected_; }));
    REQUIRE(connect_status_ == 0);
    from.start_reading();
    to.start_reading();
  }
  static void on_connection(uv_stream_t* listener, int status) {
    auto* self = static_cast<Fixture*>(listener->data);
    Stream* to = self->accepting_;
    self->accepting_ = nullptr;
    if (to == nullptr || status != 0) return;
    if (uv_accept(listener, to->uv()) == 0) self->accepted_ = true;
  }
  static void on_connected(uv_connect_t* req, int status) {
    auto* self = static_cast<Fixture*>(req->data);
    self->connect_status_ = status;
    self->connected_ = true;
  }
  static void on_watchdog(uv_timer_t* timer) {
    static_cast<Fixture*>(timer->data)->timed_out_ = true;
  }

  uv_loop_t* loop_;
  uv_tcp_t listener_{};
  uv_timer_t watchdog_{};
  uv_connect_t connect_req_{};
  sockaddr_in address_{};
  Stream* accepting_ = nullptr;
  bool accepted_ = false;
  bool connected_ = false;
  int connect_status_ = 0;
  bool timed_out_ = false;
  // Declared last: destroyed first, before the Link and the Pool.
  std::vector<std::unique_ptr<ClientPair>> clients_;
};

// Runs `body` with a Fixture on a fresh loop, and checks that the loop
// closes cleanly afterwards (every handle was closed).
template <class Body>
inline void with_fixture(Body body) {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Fixture f(&loop);
    body(f);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace pgmux::proxy::link_test
