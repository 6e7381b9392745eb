// The input buffer of one connection, with three cursors in the manner of
// PgBouncer's IOBuf:
//
//   [0, sent)        done: written to the peer or consumed by pgmux
//   [sent, parsed)   decided: to be forwarded, not yet written
//   [parsed, recv)   received, not yet looked at
//   [recv, capacity) free tail handed to libuv's alloc_cb
//
// The backing block comes from a BlockPool only while bytes are in flight,
// so an idle connection holds no buffer memory.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace pgmux::proxy {

// A free list of fixed-size blocks. One per event loop; not thread-safe.
class BlockPool {
 public:
  explicit BlockPool(size_t block_size, size_t max_cached = 1024);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  size_t block_size() const { return block_size_; }
  uint8_t* take();
  void give_back(uint8_t* block);
  size_t cached() const { return free_.size(); }
  // Frees the cached blocks that stayed unused since the previous call,
  // keeping `floor` of them; returns how many went. Called periodically, so
  // a burst (thousands of logins, a wave of queued requests) leaves no
  // lasting memory behind.
  size_t trim(size_t floor);
  // One block for data that is consumed within a single callback (TLS
  // ciphertext before decryption). Shared by every connection on the loop.
  uint8_t* scratch();

 private:
  size_t block_size_;
  size_t max_cached_;
  std::vector<uint8_t*> free_;
  size_t low_water_ = 0;  // Fewest cached blocks since the last trim.
  uint8_t* scratch_ = nullptr;
};

class Buffer {
 public:
  explicit Buffer(BlockPool& pool) : pool_(&pool) {}
  ~Buffer() { release(); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // Free tail for the next read; takes a block from the pool if needed.
  // Compacts first when the tail is short, so a partial message moves to
  // the front.
  std::span<uint8_t> free_tail();
  void commit_received(size_t n) {
    recv_ += n;
    assert(recv_ <= capacity());
  }

  // Bytes received but not yet decided on.
  std::span<const uint8_t> unparsed() const { return {data_ + parsed_, recv_ - parsed_}; }
  // Bytes decided for forwarding but not yet written.
  std::span<const uint8_t> pending() const { return {data_ + sent_, parsed_ - sent_}; }

  // Marks n unparsed bytes as decided (to forward).
  void mark_parsed(size_t n) {
    parsed_ += n;
    assert(parsed_ <= recv_);
  }
  // Marks every decided byte as done (after a write completed).
  void mark_sent() { sent_ = parsed_; }
  // Drops n unparsed bytes (consumed by pgmux). REQUIRES: pending().empty().
  void consume(size_t n) {
    assert(sent_ == parsed_);
    parsed_ += n;
    sent_ = parsed_;
    assert(parsed_ <= recv_);
  }

  bool empty() const { return sent_ == recv_; }
  // No read can add a byte: the block holds nothing but undecided or
  // unsent bytes (free_tail() would return an empty span).
  bool full() const { return data_ != nullptr && recv_ - sent_ >= capacity(); }
  BlockPool& pool() { return *pool_; }
  bool has_block() const { return data_ != nullptr; }
  size_t capacity() const { return data_ != nullptr ? pool_->block_size() : 0; }
  // Returns the block to the pool when nothing is left in it.
  void shrink_if_empty();
  // Returns the block whatever it holds (on close).
  void release();

 private:
  BlockPool* pool_;
  uint8_t* data_ = nullptr;
  size_t sent_ = 0;
  size_t parsed_ = 0;
  size_t recv_ = 0;
};

}  // namespace pgmux::proxy
