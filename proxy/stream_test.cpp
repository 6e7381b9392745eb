// Stream on a real loop over loopback TCP pairs (port 0, no PostgreSQL):
// ordered owned writes, lent writes with the lender's cursors, backpressure
// that stops reading without reporting EOF, EOF, and the close lifecycle.
// The loop is driven until a condition holds; a watchdog timer bounds each
// wait so that a broken Stream fails the test instead of hanging it.
#include "proxy/stream.h"

#include <doctest/doctest.h>
#include <poll.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace pgmux::proxy {
namespace {

constexpr size_t kBlockSize = 4096;
constexpr uint64_t kWatchdogMs = 10000;

// Records every event; in kDrain mode it also takes every byte out of the
// input buffer as it arrives, like an owner that consumes everything.
struct Recorder final : StreamEvents {
  enum class Mode { kDrain, kHold };

  void on_readable(Stream& stream) override {
    ++readable;
    if (mode == Mode::kDrain) take_all(stream);
  }
  void on_eof(Stream& /*stream*/, int status) override {
    ++eofs;
    eof_status = status;
    received_at_eof = received.size();
  }
  void on_lent_write_done(Stream& /*lender*/) override { ++lent_done; }
  void on_closed(Stream& /*stream*/) override { ++closed; }

  // Moves every unparsed byte into `received`.
  // REQUIRES: nothing of the stream's input is pending.
  void take_all(Stream& stream) {
    std::span<const uint8_t> bytes = stream.input().unparsed();
    received.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    stream.input().consume(bytes.size());
  }

  Mode mode = Mode::kDrain;
  std::string received;
  int readable = 0;
  int eofs = 0;
  int eof_status = 0;
  size_t received_at_eof = 0;
  int lent_done = 0;
  int closed = 0;
};

// One end of a connection: the Stream and its owner's events.
struct Peer {
  explicit Peer(BlockPool& blocks) : stream(events, blocks) {}
  Recorder events;
  Stream stream;
};

std::string text_of(std::span<const uint8_t> bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Bytes that differ from position to position, so that a reordering, a gap
// or a duplicate shows in a comparison.
std::string pattern(size_t size, uint8_t seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 31 + seed + i / 251) & 0xff);
  return out;
}

// A listener on 127.0.0.1 port 0, the peers connected through it, and a
// watchdog. The harness owns the peers so that they are closed (and their
// close callbacks have run) before they are freed, even when a REQUIRE fails
// part way through a test.
class Harness {
 public:
  explicit Harness(uv_loop_t* loop) : loop_(loop), blocks_(kBlockSize) {
    REQUIRE(uv_tcp_init(loop_, &listener_) == 0);
    listener_.data = this;
    sockaddr_in any{};
    uv_ip4_addr("127.0.0.1", 0, &any);
    REQUIRE(uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&any), 0) == 0);
    REQUIRE(uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 8, &Harness::on_connection) == 0);
    int length = sizeof address_;
    REQUIRE(uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&address_), &length) == 0);
    REQUIRE(uv_timer_init(loop_, &watchdog_) == 0);
    watchdog_.data = this;
    connect_req_.data = this;
  }

  ~Harness() {
    for (auto& peer : peers_) peer->stream.close();
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&watchdog_), nullptr);
    uv_run(loop_, UV_RUN_DEFAULT);
  }
  Harness(const Harness&) = delete;
  Harness& operator=(const Harness&) = delete;

  BlockPool& blocks() { return blocks_; }

  // A new, uninitialised peer.
  Peer& peer() {
    peers_.push_back(std::make_unique<Peer>(blocks_));
    return *peers_.back();
  }

  // Initialises both streams and connects `client` to `server` (accepted
  // from the listener). Neither is reading yet.
  void connect(Peer& client, Peer& server) {
    REQUIRE(server.stream.init(loop_) == 0);
    REQUIRE(client.stream.init(loop_) == 0);
    accepting_ = &server;
    accepted_ = false;
    connected_ = false;
    REQUIRE(uv_tcp_connect(&connect_req_, client.stream.tcp(),
                           reinterpret_cast<const sockaddr*>(&address_),
                           &Harness::on_connected) == 0);
    REQUIRE(run_until([&] { return accepted_ && connected_; }));
    CHECK(connect_status_ == 0);
  }

  // Runs the loop until pred() holds or the watchdog fires; returns pred().
  template <class Pred>
  bool run_until(Pred pred) {
    timed_out_ = false;
    uv_timer_start(&watchdog_, &Harness::on_watchdog, kWatchdogMs, 0);
    while (!pred() && !timed_out_) uv_run(loop_, UV_RUN_ONCE);
    uv_timer_stop(&watchdog_);
    return pred();
  }

  // Closes every peer and checks that each reported on_closed exactly once.
  void close_all() {
    for (auto& peer : peers_) peer->stream.close();
    CHECK(run_until([&] {
      for (auto& peer : peers_) {
        if (peer->events.closed == 0) return false;
      }
      return true;
    }));
    for (auto& peer : peers_) CHECK(peer->events.closed == 1);
  }

 private:
  static void on_connection(uv_stream_t* listener, int status) {
    auto* self = static_cast<Harness*>(listener->data);
    CHECK(status == 0);
    Peer* server = self->accepting_;
    self->accepting_ = nullptr;
    CHECK(server != nullptr);
    if (server == nullptr || status != 0) return;
    CHECK(uv_accept(listener, server->stream.uv()) == 0);
    self->accepted_ = true;
  }
  static void on_connected(uv_connect_t* req, int status) {
    auto* self = static_cast<Harness*>(req->data);
    self->connect_status_ = status;
    self->connected_ = true;
  }
  static void on_watchdog(uv_timer_t* timer) {
    static_cast<Harness*>(timer->data)->timed_out_ = true;
  }

  uv_loop_t* loop_;
  BlockPool blocks_;
  uv_tcp_t listener_{};
  uv_timer_t watchdog_{};
  uv_connect_t connect_req_{};
  sockaddr_in address_{};
  Peer* accepting_ = nullptr;
  bool accepted_ = false;
  bool connected_ = false;
  int connect_status_ = 0;
  bool timed_out_ = false;
  std::vector<std::unique_ptr<Peer>> peers_;
};

// Shrinks the kernel's buffers for `peer` so that a write of a few hundred
// kilobytes cannot all be taken at once while nobody reads.
void shrink_socket_buffers(Peer& peer) {
  int size = 4096;
  CHECK(uv_send_buffer_size(reinterpret_cast<uv_handle_t*>(peer.stream.tcp()), &size) == 0);
  size = 4096;
  CHECK(uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(peer.stream.tcp()), &size) == 0);
}

TEST_CASE("Stream: owned writes arrive in order and fire on_readable") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& client = h.peer();
    Peer& server = h.peer();
    h.connect(client, server);
    shrink_socket_buffers(client);
    shrink_socket_buffers(server);

    // Small writes the kernel takes at once, then one too large for it
    // (queued as a copy), then small ones behind the queued one.
    const std::string big = pattern(64 * 1024, 7);
    std::string expected;
    for (const std::string& part : {std::string("first "), std::string("second "), big,
                                    std::string(" third"), std::string(" fourth")}) {
      client.stream.write_owned(part);
      expected += part;
    }
    CHECK(client.stream.write_queue_size() > 0);  // Not all taken at once.

    server.stream.start_reading();
    CHECK(server.stream.reading());
    REQUIRE(h.run_until([&] { return server.events.received.size() >= expected.size(); }));
    CHECK(server.events.received.size() == expected.size());
    CHECK(server.events.received == expected);
    CHECK(server.events.readable >= 2);  // 64 KB cannot come in one 4 KB read.
    CHECK(server.events.eofs == 0);
    CHECK(client.stream.write_queue_size() == 0);
    CHECK(server.stream.reading());
    h.close_all();
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: try_read delivers bytes already in the socket without the loop") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& client = h.peer();
    Peer& server = h.peer();
    h.connect(client, server);
    server.stream.start_reading();
    server.stream.try_read();  // Nothing sent yet: nothing delivered, no EOF.
    CHECK(server.events.readable == 0);
    CHECK(server.events.eofs == 0);

    client.stream.write_owned(std::string("startup packet"));
    uv_os_fd_t fd;
    REQUIRE(uv_fileno(reinterpret_cast<const uv_handle_t*>(server.stream.tcp()), &fd) == 0);
    pollfd ready{fd, POLLIN, 0};
    REQUIRE(::poll(&ready, 1, 5000) == 1);  // In the socket, not yet seen by the loop.
    server.stream.try_read();
    CHECK(server.events.readable == 1);
    CHECK(server.events.received == "startup packet");

    // The loop goes on from there: later bytes come as usual.
    client.stream.write_owned(std::string(", then more"));
    REQUIRE(h.run_until([&] { return server.events.received.size() >= 25; }));
    CHECK(server.events.received == "startup packet, then more");
    h.close_all();
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: a lent write the kernel takes at once needs no callback") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& app = h.peer();       // Writes into the lender.
    Peer& lender = h.peer();    // Its input buffer is lent.
    Peer& forward = h.peer();   // The destination stream.
    Peer& upstream = h.peer();  // Where the forwarded bytes arrive.
    h.connect(app, lender);
    h.connect(forward, upstream);

    lender.events.mode = Recorder::Mode::kHold;
    lender.stream.start_reading();
    upstream.stream.start_reading();
    app.stream.write_owned(std::string("hello, upstream|and the rest"));
    REQUIRE(h.run_until([&] { return lender.stream.input().unparsed().size() == 28; }));

    // Nothing decided yet: nothing to lend, and "done" at once.
    CHECK(forward.stream.write_lent(lender.stream));
    CHECK_FALSE(lender.stream.lending());

    lender.stream.input().mark_parsed(15);  // "hello, upstream"
    CHECK(text_of(lender.stream.input().pending()) == "hello, upstream");
    CHECK(forward.stream.write_lent(lender.stream));
    CHECK_FALSE(lender.stream.lending());
    CHECK_FALSE(forward.stream.lent_write_pending());
    lender.stream.input().mark_sent();
    CHECK(lender.stream.input().pending().empty());
    CHECK(text_of(lender.stream.input().unparsed()) == "|and the rest");

    REQUIRE(h.run_until([&] { return upstream.events.received.size() >= 15; }));
    CHECK(upstream.events.received == "hello, upstream");
    CHECK(lender.events.lent_done == 0);  // Synchronous: the return value said so.
    h.close_all();
    CHECK(lender.events.lent_done == 0);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

// Fills `forward`'s path so that its next write must queue: a large owned
// write with `upstream` not reading and small kernel buffers on both sides.
// Returns the filler.
std::string back_up(Peer& forward, Peer& upstream) {
  shrink_socket_buffers(forward);
  shrink_socket_buffers(upstream);
  std::string filler = pattern(64 * 1024, 3);
  forward.stream.write_owned(filler);
  REQUIRE(forward.stream.write_queue_size() > 0);
  return filler;
}

TEST_CASE("Stream: a lent write that queues completes with on_lent_write_done, in order") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& app = h.peer();
    Peer& lender = h.peer();
    Peer& forward = h.peer();
    Peer& upstream = h.peer();
    h.connect(app, lender);
    h.connect(forward, upstream);
    const std::string filler = back_up(forward, upstream);

    const std::string payload = pattern(1000, 11);
    lender.events.mode = Recorder::Mode::kHold;
    lender.stream.start_reading();
    app.stream.write_owned(payload);
    REQUIRE(h.run_until([&] { return lender.stream.input().unparsed().size() == 1000; }));
    lender.stream.stop_reading();  // The owner's side of the contract.

    lender.stream.input().mark_parsed(600);
    CHECK_FALSE(forward.stream.write_lent(lender.stream));  // Behind the filler.
    CHECK(lender.stream.lending());
    CHECK(forward.stream.lent_write_pending());
    // Generated bytes join the same queue, behind the lent slice.
    forward.stream.write_owned(std::string("|owned after"));
    CHECK(lender.events.lent_done == 0);

    upstream.stream.start_reading();
    REQUIRE(h.run_until([&] { return lender.events.lent_done > 0; }));
    CHECK(lender.events.lent_done == 1);
    CHECK_FALSE(lender.stream.lending());
    CHECK_FALSE(forward.stream.lent_write_pending());
    // The cursors are the owner's: the slice is still pending until marked.
    CHECK(lender.stream.input().pending().size() == 600);
    lender.stream.input().mark_sent();
    CHECK(lender.stream.input().pending().empty());
    CHECK(text_of(lender.stream.input().unparsed()) == payload.substr(600));
    CHECK_FALSE(lender.stream.input().empty());
    lender.stream.input().consume(400);
    CHECK(lender.stream.input().empty());

    const std::string expected = filler + payload.substr(0, 600) + "|owned after";
    REQUIRE(h.run_until([&] { return upstream.events.received.size() >= expected.size(); }));
    CHECK(upstream.events.received.size() == expected.size());
    CHECK(upstream.events.received == expected);
    CHECK(lender.events.eofs == 0);
    CHECK(upstream.events.eofs == 0);
    h.close_all();
    CHECK(lender.events.lent_done == 1);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: a lender that closes mid-write closes the destination without a callback") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& app = h.peer();
    Peer& lender = h.peer();
    Peer& forward = h.peer();
    Peer& upstream = h.peer();
    h.connect(app, lender);
    h.connect(forward, upstream);
    back_up(forward, upstream);

    lender.events.mode = Recorder::Mode::kHold;
    lender.stream.start_reading();
    app.stream.write_owned(std::string("in flight"));
    REQUIRE(h.run_until([&] { return lender.stream.input().unparsed().size() == 9; }));
    lender.stream.stop_reading();
    lender.stream.input().mark_parsed(9);
    REQUIRE_FALSE(forward.stream.write_lent(lender.stream));

    lender.stream.close();
    // The destination's queue points into the lender's buffer: it goes too.
    CHECK(forward.stream.closing());
    CHECK_FALSE(forward.stream.lent_write_pending());
    REQUIRE(h.run_until([&] { return lender.events.closed > 0 && forward.events.closed > 0; }));
    CHECK(lender.events.lent_done == 0);  // Never called back once closed.
    CHECK(lender.events.closed == 1);
    CHECK(forward.events.closed == 1);
    h.close_all();
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: a destination that closes mid-write still tells the lender") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& app = h.peer();
    Peer& lender = h.peer();
    Peer& forward = h.peer();
    Peer& upstream = h.peer();
    h.connect(app, lender);
    h.connect(forward, upstream);
    back_up(forward, upstream);

    lender.events.mode = Recorder::Mode::kHold;
    lender.stream.start_reading();
    app.stream.write_owned(std::string("in flight"));
    REQUIRE(h.run_until([&] { return lender.stream.input().unparsed().size() == 9; }));
    lender.stream.stop_reading();
    lender.stream.input().mark_parsed(9);
    REQUIRE_FALSE(forward.stream.write_lent(lender.stream));

    forward.stream.close();
    CHECK(lender.stream.lending());  // Until libuv cancels the write.
    REQUIRE(h.run_until([&] { return forward.events.closed > 0; }));
    // The cancelled write's callback ran before the close callback.
    CHECK(lender.events.lent_done == 1);
    CHECK_FALSE(lender.stream.lending());
    CHECK_FALSE(lender.stream.closing());
    // Nothing more to deliver to: a new lent write is dropped as "done".
    CHECK(forward.stream.write_lent(lender.stream));
    CHECK(lender.events.lent_done == 1);
    h.close_all();
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: a full input buffer stops reading without EOF; start_reading resumes") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& client = h.peer();
    Peer& server = h.peer();
    h.connect(client, server);

    const std::string data = pattern(3 * kBlockSize + 123, 5);
    server.events.mode = Recorder::Mode::kHold;  // Nobody consumes.
    server.stream.start_reading();
    client.stream.write_owned(data);

    REQUIRE(h.run_until([&] { return !server.stream.reading(); }));
    CHECK(server.stream.input().full());
    CHECK(server.stream.input().unparsed().size() == kBlockSize);
    CHECK(text_of(server.stream.input().unparsed()) == data.substr(0, kBlockSize));
    CHECK(server.events.eofs == 0);
    CHECK_FALSE(server.stream.closing());
    // Whatever else the loop has to do, nothing more is read.
    const int readable = server.events.readable;
    for (int i = 0; i < 10; ++i) uv_run(&loop, UV_RUN_NOWAIT);
    CHECK(server.events.readable == readable);
    CHECK(server.events.eofs == 0);
    CHECK_FALSE(server.stream.reading());

    // start_reading() with the buffer still full: reading stops again at
    // once, still without EOF.
    server.stream.start_reading();
    CHECK(server.stream.reading());
    REQUIRE(h.run_until([&] { return !server.stream.reading(); }));
    CHECK(server.events.eofs == 0);
    CHECK(server.stream.input().unparsed().size() == kBlockSize);

    // Make room, resume: the rest arrives, in order.
    server.events.take_all(server.stream);
    CHECK(server.stream.input().empty());
    server.events.mode = Recorder::Mode::kDrain;
    server.stream.start_reading();
    REQUIRE(h.run_until([&] { return server.events.received.size() >= data.size(); }));
    CHECK(server.events.received.size() == data.size());
    CHECK(server.events.received == data);
    CHECK(server.events.eofs == 0);
    CHECK(server.stream.reading());
    h.close_all();
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: the peer's close is reported once through on_eof, after its bytes") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& client = h.peer();
    Peer& server = h.peer();
    h.connect(client, server);
    shrink_socket_buffers(client);
    shrink_socket_buffers(server);

    // close_after_writes() lets a queued write finish first.
    const std::string data = pattern(64 * 1024, 9);
    client.stream.write_owned(data);
    CHECK(client.stream.write_queue_size() > 0);
    client.stream.close_after_writes();
    CHECK_FALSE(client.stream.reading());
    server.stream.start_reading();
    REQUIRE(h.run_until([&] { return server.events.eofs > 0; }));
    CHECK(server.events.eofs == 1);
    CHECK(server.events.eof_status == UV_EOF);
    CHECK(server.events.received_at_eof == data.size());
    CHECK(server.events.received == data);
    CHECK_FALSE(server.stream.reading());
    CHECK_FALSE(server.stream.closing());  // EOF is reported, the owner decides.
    REQUIRE(h.run_until([&] { return client.events.closed > 0; }));
    CHECK(client.events.closed == 1);
    CHECK(client.events.eofs == 0);
    h.close_all();
    CHECK(server.events.eofs == 1);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: a plain close() by the peer is EOF too") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& client = h.peer();
    Peer& server = h.peer();
    h.connect(client, server);
    server.stream.start_reading();
    client.stream.write_owned(std::string("last words"));
    client.stream.close();
    REQUIRE(h.run_until([&] { return server.events.eofs > 0; }));
    CHECK(server.events.eof_status == UV_EOF);
    CHECK(server.events.received == "last words");
    CHECK(server.events.received_at_eof == 10);
    h.close_all();
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: close() is idempotent and on_closed fires once, from the loop") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    Harness h(&loop);
    Peer& client = h.peer();
    Peer& server = h.peer();
    h.connect(client, server);
    server.stream.start_reading();
    client.stream.write_owned(std::string("x"));
    REQUIRE(h.run_until([&] { return server.events.received == "x"; }));
    CHECK(server.stream.input().has_block() == false);  // Drained: block returned.

    server.stream.close();
    CHECK(server.stream.closing());
    CHECK_FALSE(server.stream.reading());
    CHECK(server.events.closed == 0);  // libuv's close callback, not synchronous.
    server.stream.close();
    server.stream.close_after_writes();
    server.stream.start_reading();  // Ignored while closing.
    CHECK_FALSE(server.stream.reading());
    server.stream.write_owned(std::string("dropped"));  // Ignored, not a crash.
    REQUIRE(h.run_until([&] { return server.events.closed > 0; }));
    CHECK(server.events.closed == 1);
    server.stream.close();
    client.stream.start_reading();
    REQUIRE(h.run_until([&] { return client.events.eofs > 0; }));
    CHECK(client.events.received.empty());  // "dropped" never went out.
    CHECK(server.events.closed == 1);
    h.close_all();  // Closes both again; still one on_closed each.
  }
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("Stream: closing a stream that was never initialised reports on_closed at once") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    BlockPool blocks(kBlockSize);
    Recorder events;
    Stream stream(events, blocks);
    stream.close();
    CHECK(events.closed == 1);
    stream.close();
    stream.close_after_writes();
    CHECK(events.closed == 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(events.closed == 1);
  }
  CHECK(uv_loop_close(&loop) == 0);
}

}  // namespace
}  // namespace pgmux::proxy
