#include "tests/fuzz/fake_peer.h"

#include <cstdlib>

namespace pgmux::fuzz {

namespace {

// Past this many chunked writes a peer writes the rest at once: splitting a
// 20 KB row into single bytes would cost 20 000 loop turns and find nothing
// new.
constexpr size_t kMaxSplits = 64;

char g_read_buffer[64 * 1024];  // One thread; every read is consumed at once.

}  // namespace

Peer::Peer(uv_loop_t* loop, PeerEvents& events, size_t chunk, uint64_t& progress)
    : events_(events), chunk_(chunk), progress_(progress) {
  if (uv_tcp_init(loop, &tcp_) != 0) std::abort();
  tcp_.data = this;
}

Peer::~Peer() {
  // REQUIRES: closed(). Freeing an open handle would corrupt the loop.
  if (!closed_) __builtin_trap();
}

void Peer::connect(uint16_t port) {
  sockaddr_in address{};
  uv_ip4_addr("127.0.0.1", port, &address);
  connect_req_.data = this;
  if (uv_tcp_connect(&connect_req_, &tcp_, reinterpret_cast<const sockaddr*>(&address),
                     &Peer::on_connect) != 0) {
    eof_ = true;
  }
}

void Peer::on_connect(uv_connect_t* req, int status) {
  auto* self = static_cast<Peer*>(req->data);
  ++self->progress_;
  if (self->closing_) return;
  if (status != 0) {
    self->eof_ = true;
    self->events_.on_peer_eof(*self);
    return;
  }
  self->connected_ = true;
  self->start_reading();
}

void Peer::accepted() {
  connected_ = true;
  start_reading();
}

void Peer::start_reading() { uv_read_start(stream(), &Peer::on_alloc, &Peer::on_read); }

void Peer::on_alloc(uv_handle_t* /*handle*/, size_t /*suggested*/, uv_buf_t* buf) {
  *buf = uv_buf_init(g_read_buffer, sizeof g_read_buffer);
}

void Peer::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<Peer*>(stream->data);
  if (nread == 0) return;
  ++self->progress_;
  if (nread < 0) {
    uv_read_stop(stream);
    self->eof_ = true;
    self->out_.clear();
    self->events_.on_peer_eof(*self);
    return;
  }
  self->in_.append(buf->base, static_cast<size_t>(nread));
  self->events_.on_peer_data(*self);
}

size_t Peer::pump() {
  if (!connected_ || closing_ || eof_ || out_.empty()) return 0;
  size_t size = out_.size();
  if (chunk_ != 0 && splits_ < kMaxSplits && size > chunk_) {
    size = chunk_;
    ++splits_;
  }
  uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(size));
  const int written = uv_try_write(stream(), &buf, 1);
  if (written == UV_EAGAIN) return 0;
  if (written < 0) {
    // The other side is gone; its EOF arrives as a read event.
    out_.clear();
    return 0;
  }
  out_.erase(0, static_cast<size_t>(written));
  ++progress_;
  return static_cast<size_t>(written);
}

void Peer::close(bool reset) {
  if (closing_) return;
  closing_ = true;
  if (!reset && connected_ && !eof_ && !out_.empty()) {
    // A last message (FATAL, ReadyForQuery) goes out before the FIN; what
    // the kernel does not take is dropped.
    uv_buf_t buf = uv_buf_init(out_.data(), static_cast<unsigned>(out_.size()));
    uv_try_write(stream(), &buf, 1);
  }
  out_.clear();
  auto* handle = reinterpret_cast<uv_handle_t*>(&tcp_);
  if (reset && connected_ && !eof_ && uv_tcp_close_reset(&tcp_, &Peer::on_close) == 0) return;
  uv_close(handle, &Peer::on_close);
}

void Peer::on_close(uv_handle_t* handle) {
  auto* self = static_cast<Peer*>(handle->data);
  self->closed_ = true;
}

}  // namespace pgmux::fuzz
