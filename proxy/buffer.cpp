#include "proxy/buffer.h"

#include <cstring>

namespace pgmux::proxy {

BlockPool::BlockPool(size_t block_size, size_t max_cached)
    : block_size_(block_size), max_cached_(max_cached) {}

BlockPool::~BlockPool() {
  for (uint8_t* block : free_) delete[] block;
  delete[] scratch_;
}

uint8_t* BlockPool::scratch() {
  if (scratch_ == nullptr) scratch_ = new uint8_t[block_size_];
  return scratch_;
}

uint8_t* BlockPool::take() {
  if (free_.empty()) return new uint8_t[block_size_];
  uint8_t* block = free_.back();
  free_.pop_back();
  if (free_.size() < low_water_) low_water_ = free_.size();
  return block;
}

size_t BlockPool::trim(size_t floor) {
  size_t idle = low_water_ < free_.size() ? low_water_ : free_.size();
  size_t freed = 0;
  while (idle > 0 && free_.size() > floor) {
    delete[] free_.back();
    free_.pop_back();
    --idle;
    ++freed;
  }
  low_water_ = free_.size();
  return freed;
}

void BlockPool::give_back(uint8_t* block) {
  if (free_.size() >= max_cached_) {
    delete[] block;
    return;
  }
  free_.push_back(block);
}

std::span<uint8_t> Buffer::free_tail() {
  if (data_ == nullptr) {
    data_ = pool_->take();
    sent_ = parsed_ = recv_ = 0;
  }
  if (sent_ == recv_) {
    sent_ = parsed_ = recv_ = 0;
  } else if (sent_ > 0 && sent_ == parsed_ && capacity() - recv_ < capacity() / 4) {
    // Only undecided bytes remain (a partial message): move them to the front
    // so the message can complete. Decided bytes may be referenced by an
    // in-flight write, so they never move.
    const size_t keep = recv_ - sent_;
    std::memmove(data_, data_ + sent_, keep);
    sent_ = parsed_ = 0;
    recv_ = keep;
  }
  return {data_ + recv_, capacity() - recv_};
}

void Buffer::shrink_if_empty() {
  if (data_ != nullptr && sent_ == recv_) release();
}

void Buffer::release() {
  if (data_ != nullptr) pool_->give_back(data_);
  data_ = nullptr;
  sent_ = parsed_ = recv_ = 0;
}

}  // namespace pgmux::proxy
