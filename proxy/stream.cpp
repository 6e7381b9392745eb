#include "proxy/stream.h"

#include <sys/socket.h>

#include <cstring>
#include <memory>

namespace pgmux::proxy {
namespace {

// An owned write that the kernel did not take at once: the bytes live here
// until libuv's callback.
struct OwnedWrite {
  uv_write_t req{};
  std::string bytes;
};

Stream* stream_of(uv_handle_t* handle) { return static_cast<Stream*>(handle->data); }

}  // namespace

Stream::Stream(StreamEvents& events, BlockPool& blocks) : events_(events), input_(blocks) {}

Stream::~Stream() = default;

int Stream::init(uv_loop_t* loop) {
  int rc = uv_tcp_init(loop, &tcp_);
  if (rc == 0) {
    tcp_.data = this;
    initialised_ = true;
  }
  return rc;
}

const std::string& Stream::tls_error() const {
  static const std::string kNone;
  return tls_error_ ? *tls_error_ : kNone;
}

void Stream::start_reading() {
  if (reading_ || closing_ || shutting_down_) return;
  if (uv_read_start(uv(), &Stream::on_alloc, &Stream::on_read) == 0) reading_ = true;
  // Plaintext may already wait inside the TLS session from before reading
  // stopped; the socket will not signal it again.
  if (reading_ && tls_ != nullptr && tls_->handshake_done()) pump();
}

void Stream::try_read() {
  if (!reading_ || closing_ || tls_ != nullptr || lent_to_ != nullptr) return;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<const uv_handle_t*>(&tcp_), &fd) != 0) return;
  std::span<uint8_t> tail = input_.free_tail();
  ssize_t n = 0;
  if (!tail.empty()) n = ::recv(fd, tail.data(), tail.size(), MSG_DONTWAIT);
  if (n > 0) {
    ++reads_;
    input_.commit_received(static_cast<size_t>(n));
    events_.on_readable(*this);
  }
  if (!closing_ && lent_to_ == nullptr) input_.shrink_if_empty();
}

void Stream::stop_reading() {
  if (!reading_) return;
  uv_read_stop(uv());
  reading_ = false;
}

void Stream::on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) {
  Stream* self = stream_of(handle);
  if (self->tls_ != nullptr) {
    // Ciphertext goes into the shared scratch block and is fed to the TLS
    // session within on_read, before anything else can use the block.
    BlockPool& blocks = self->input_.pool();
    *buf = uv_buf_init(reinterpret_cast<char*>(blocks.scratch()),
                       static_cast<unsigned>(blocks.block_size()));
    return;
  }
  std::span<uint8_t> tail = self->input_.free_tail();
  *buf = uv_buf_init(reinterpret_cast<char*>(tail.data()), static_cast<unsigned>(tail.size()));
}

void Stream::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* /*buf*/) {
  ++reads_;
  Stream* self = stream_of(reinterpret_cast<uv_handle_t*>(s));
  if (nread > 0 && self->tls_ != nullptr) {
    self->tls_->feed({self->input_.pool().scratch(), static_cast<size_t>(nread)});
    self->on_tls_input();
  } else if (nread > 0) {
    self->input_.commit_received(static_cast<size_t>(nread));
    self->events_.on_readable(*self);
  } else if (nread == UV_ENOBUFS) {
    // on_alloc found the buffer full of bytes not yet forwarded or decided
    // on: that is backpressure, not an error. Reading resumes when the
    // owner has made room and calls start_reading().
    self->stop_reading();
  } else if (nread < 0) {
    self->stop_reading();
    self->events_.on_eof(*self, static_cast<int>(nread));
  }
  if (!self->closing_ && self->lent_to_ == nullptr) self->input_.shrink_if_empty();
}

bool Stream::write_lent(Stream& lender) {
  std::span<const uint8_t> bytes = lender.input_.pending();
  if (bytes.empty()) return true;
  if (closing_ || shutting_down_) return true;  // Nobody to deliver to: drop.
  if (tls_ != nullptr) {
    // SSL_write copies the plaintext; the ciphertext waits in tls_out_.
    if (!tls_->write(bytes)) {
      close();
      return true;
    }
    if (!tls_out_) tls_out_ = std::make_unique<std::string>();
    tls_out_->clear();
    tls_->take_output(*tls_out_);
    bytes = {reinterpret_cast<const uint8_t*>(tls_out_->data()), tls_out_->size()};
  }
  uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(bytes.data())),
                             static_cast<unsigned>(bytes.size()));
  int written = uv_try_write(uv(), &buf, 1);
  if (written == static_cast<int>(bytes.size())) return true;
  if (written < 0 && written != UV_EAGAIN) {
    close();
    return true;
  }
  if (written > 0) {
    buf.base += written;
    buf.len -= static_cast<size_t>(written);
  }
  borrowed_from_ = &lender;
  lender.lent_to_ = this;
  lent_req_ = std::make_unique<uv_write_t>();
  if (uv_write(lent_req_.get(), uv(), &buf, 1, &Stream::on_lent_written) != 0) {
    lent_req_.reset();
    borrowed_from_ = nullptr;
    lender.lent_to_ = nullptr;
    close();
    return true;
  }
  return false;
}

void Stream::on_lent_written(uv_write_t* req, int status) {
  Stream* self = stream_of(reinterpret_cast<uv_handle_t*>(req->handle));
  self->lent_req_.reset();
  self->finish_lent_write();
  if (status < 0 && status != UV_ECANCELED) self->close();
}

void Stream::finish_lent_write() {
  Stream* lender = borrowed_from_;
  borrowed_from_ = nullptr;
  if (lender == nullptr) return;  // The lender closed meanwhile.
  lender->lent_to_ = nullptr;
  lender->events_.on_lent_write_done(*lender);
}

void Stream::write_owned(std::span<const uint8_t> bytes) {
  if (bytes.empty() || closing_ || shutting_down_) return;
  if (tls_ != nullptr) {
    if (!tls_->write(bytes)) {
      close();
      return;
    }
    flush_tls_output();
    return;
  }
  raw_write_owned(bytes);
}

void Stream::raw_write_owned(std::span<const uint8_t> bytes) {
  if (bytes.empty() || closing_) return;
  // Straight from the caller's bytes; only what the kernel did not take
  // is copied, to live until libuv's callback.
  uv_buf_t buf = uv_buf_init(const_cast<char*>(reinterpret_cast<const char*>(bytes.data())),
                             static_cast<unsigned>(bytes.size()));
  int written = uv_try_write(uv(), &buf, 1);
  if (written == static_cast<int>(bytes.size())) return;
  if (written < 0 && written != UV_EAGAIN) {
    close();
    return;
  }
  const size_t taken = written > 0 ? static_cast<size_t>(written) : 0;
  auto write = std::make_unique<OwnedWrite>();
  write->bytes.assign(reinterpret_cast<const char*>(bytes.data()) + taken, bytes.size() - taken);
  uv_buf_t rest = uv_buf_init(write->bytes.data(), static_cast<unsigned>(write->bytes.size()));
  write->req.data = write.get();
  if (uv_write(&write->req, uv(), &rest, 1, &Stream::on_owned_written) != 0) {
    close();
    return;
  }
  (void)write.release();  // Freed in on_owned_written.
}

void Stream::start_tls(const TlsContext& context, const std::string& host, bool sni) {
  tls_ = std::make_unique<TlsSession>(context, host, sni);
  if (!context.is_server()) on_tls_input();  // The client speaks first: ClientHello.
}

void Stream::flush_tls_output() {
  if (tls_ == nullptr || !tls_->has_output()) return;
  std::string out;
  tls_->take_output(out);
  raw_write_owned({reinterpret_cast<const uint8_t*>(out.data()), out.size()});
}

void Stream::tls_failed(const std::string& message) {
  tls_error_ = std::make_unique<std::string>(message);
  stop_reading();
  events_.on_eof(*this, UV_EPROTO);
}

void Stream::on_tls_input() {
  if (!tls_->handshake_done()) {
    auto done = tls_->handshake();
    flush_tls_output();
    if (!done) {
      tls_failed(done.error().message);
      return;
    }
    if (!*done) return;
    events_.on_tls_ready(*this);
    if (closing_) return;
  }
  pump();
}

void Stream::pump() {
  if (pumping_) return;
  pumping_ = true;
  while (reading_ && !closing_) {
    std::span<uint8_t> tail = input_.free_tail();
    if (tail.empty()) {
      // The buffer is full: stop taking ciphertext too (it would pile up in
      // the TLS session without bound). start_reading() pumps again, which
      // matters when the socket has nothing more to say: the plaintext
      // waiting in the session is the rest of the client's request.
      stop_reading();
      break;
    }
    auto n = tls_->read(tail);
    flush_tls_output();
    if (!n) {
      pumping_ = false;
      tls_failed(n.error().message);
      return;
    }
    if (*n == 0) break;
    input_.commit_received(*n);
    events_.on_readable(*this);
  }
  pumping_ = false;
}

void Stream::on_owned_written(uv_write_t* req, int status) {
  std::unique_ptr<OwnedWrite> write(static_cast<OwnedWrite*>(req->data));
  if (status < 0 && status != UV_ECANCELED) {
    stream_of(reinterpret_cast<uv_handle_t*>(req->handle))->close();
  }
}

void Stream::close_after_writes() {
  if (closing_ || shutting_down_ || !initialised_) {
    close();
    return;
  }
  stop_reading();
  shutting_down_ = true;
  shutdown_req_ = std::make_unique<uv_shutdown_t>();
  if (uv_shutdown(shutdown_req_.get(), uv(), &Stream::on_shutdown) != 0) {
    shutdown_req_.reset();
    close();
  }
}

void Stream::on_shutdown(uv_shutdown_t* req, int /*status*/) {
  Stream* self = stream_of(reinterpret_cast<uv_handle_t*>(req->handle));
  self->shutdown_req_.reset();
  self->close();
}

void Stream::close() {
  if (closing_) return;
  closing_ = true;
  reading_ = false;
  if (lent_to_ != nullptr) {
    // Our bytes sit in the destination's write queue: it must not outlive
    // our buffer, so it goes too, and must not call us back.
    Stream* destination = lent_to_;
    lent_to_ = nullptr;
    destination->borrowed_from_ = nullptr;
    destination->close();
  }
  if (!initialised_) {
    input_.release();
    events_.on_closed(*this);
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &Stream::on_close);
}

void Stream::on_close(uv_handle_t* handle) {
  Stream* self = stream_of(handle);
  self->input_.release();
  // A lent write still queued here was cancelled by now; its callback ran
  // and told the lender.
  self->events_.on_closed(*self);
}

}  // namespace pgmux::proxy
