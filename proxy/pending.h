// The requests a server has been sent (or that pgmux answers itself) whose
// responses have not all arrived, in order. Each client message that gets a
// response pushes one entry; each response that completes one pops it. That
// is how pgmux knows which ParseComplete to swallow (for a statement it
// prepared on its own), where in the response stream to put the
// ParseComplete or CloseComplete it answers for the server, and what the
// server skipped after an error (55.2.3: after an error in an extended-query
// request the server discards messages up to the next Sync).
//
// A ring in one vector: no allocation after the largest pipeline so far.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace pgmux::proxy {

struct Statement;

enum class Reply : uint8_t {
  kForward,  // The responses go to the client.
  kSwallow,  // pgmux sent this request itself; the responses are dropped.
  kFake,     // Not sent: pgmux answers it (`fake` holds the message type).
};

struct Pending {
  char request = 0;  // 'P', 'B', 'D', 'E', 'C', 'S' (Sync), 'Q', 'F'
  Reply reply = Reply::kForward;
  char fake = 0;     // kFake: '1' ParseComplete or '3' CloseComplete.
  bool client_parse = false;  // 'P' from the client: its name goes if the Parse fails.
  // 'P': the statement being prepared (to forget if the Parse fails).
  // 'C' with kSwallow: a statement being closed to make room (to record it
  // again if the server skips the Close). The entry owns one reference.
  Statement* statement = nullptr;
  bool settings = false;  // 'Q' with kSwallow: the read-back of settings (its rows count).
};

// True when `response` is the last message answering `request` (before any
// error). Query, FunctionCall and Sync end at ReadyForQuery, handled apart.
inline bool completes(char request, char response) {
  switch (request) {
    case 'P':
      return response == '1';
    case 'B':
      return response == '2';
    case 'D':
      return response == 'T' || response == 'n';
    case 'E':
      return response == 'C' || response == 'I' || response == 's';
    case 'C':
      return response == '3';
    default:
      return false;
  }
}

inline bool ends_at_ready(char request) { return request == 'S' || request == 'Q' || request == 'F'; }

class PendingQueue {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  Pending& front() {
    assert(size_ > 0);
    return ring_[head_];
  }
  void push(const Pending& entry) {
    if (size_ == ring_.size()) grow();
    ring_[(head_ + size_) & (ring_.size() - 1)] = entry;
    ++size_;
  }
  // Removes the entries behind the front for which `drop` holds; returns
  // how many went. The front stays.
  template <class Drop>
  size_t erase_after_front(Drop drop) {
    if (size_ < 2) return 0;
    size_t kept = 1;
    const size_t mask = ring_.size() - 1;
    for (size_t i = 1; i < size_; ++i) {
      const Pending entry = ring_[(head_ + i) & mask];
      if (drop(entry)) continue;
      ring_[(head_ + kept) & mask] = entry;
      ++kept;
    }
    const size_t dropped = size_ - kept;
    size_ = kept;
    return dropped;
  }
  Pending pop() {
    assert(size_ > 0);
    Pending entry = ring_[head_];
    head_ = (head_ + 1) & (ring_.size() - 1);
    --size_;
    return entry;
  }

 private:
  void grow() {
    std::vector<Pending> bigger(ring_.empty() ? 16 : ring_.size() * 2);
    for (size_t i = 0; i < size_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_ = std::move(bigger);
    head_ = 0;
  }

  std::vector<Pending> ring_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace pgmux::proxy
