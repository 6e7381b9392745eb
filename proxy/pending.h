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

#include "protocol/message_type.h"

namespace pgmux::proxy {

struct Statement;

enum class Reply : uint8_t {
  kForward,  // The responses go to the client.
  kSwallow,  // pgmux sent this request itself; the responses are dropped.
  kFake,     // Not sent: pgmux answers it (`fake` holds the message type).
};

struct Pending {
  char request =
      0;  // protocol::fe type: Parse, Bind, Describe, Execute, Close, Sync, Query, FunctionCall
  Reply reply = Reply::kForward;
  char fake = 0;  // kFake: the protocol::be answer pgmux gives (ParseComplete, CloseComplete).
  bool client_name = false;  // A Parse of the client's: its name goes if the Parse fails.
  // Parse: the statement being prepared (to forget if the Parse fails).
  // Close with kSwallow: a statement being closed to make room (to record it
  // again if the server skips the Close). The entry owns one reference.
  Statement* statement = nullptr;
  bool settings = false;  // Query with kSwallow: the read-back of settings (its rows count).

  // A client's message forwarded as it is.
  static Pending forwarded(char request) { return Pending{request}; }
  // The client's Parse of its named `statement`, sent under the server name.
  static Pending client_parse(Statement* statement) {
    return Pending{protocol::fe::kParse, Reply::kForward, 0, true, statement};
  }
  // The client's Parse of a statement its server has prepared already:
  // pgmux answers ParseComplete.
  static Pending answered_parse(Statement* statement) {
    return Pending{protocol::fe::kParse, Reply::kFake, protocol::be::kParseComplete, true,
                   statement};
  }
  // The client's Close of one of its names: pgmux answers CloseComplete.
  static Pending answered_close() {
    return Pending{protocol::fe::kClose, Reply::kFake, protocol::be::kCloseComplete};
  }
  // pgmux prepares `statement` ahead of a client's Bind or Describe.
  static Pending own_parse(Statement* statement) {
    return Pending{protocol::fe::kParse, Reply::kSwallow, 0, false, statement};
  }
  // pgmux closes `evicted` to make room (the entry takes its reference).
  static Pending own_close(Statement* evicted) {
    return Pending{protocol::fe::kClose, Reply::kSwallow, 0, false, evicted};
  }
  // pgmux's Query that brings the session in line.
  static Pending own_query() { return Pending{protocol::fe::kQuery, Reply::kSwallow}; }
  // pgmux's Query that reads the settings back; its rows are read.
  static Pending settings_query() {
    return Pending{protocol::fe::kQuery, Reply::kSwallow, 0, false, nullptr, true};
  }
};

// True when `response` is the last message answering `request` (before any
// error). Query, FunctionCall and Sync end at ReadyForQuery, handled apart.
inline bool completes(char request, char response) {
  namespace fe = protocol::fe;
  namespace be = protocol::be;
  switch (request) {
    case fe::kParse:
      return response == be::kParseComplete;
    case fe::kBind:
      return response == be::kBindComplete;
    case fe::kDescribe:
      return response == be::kRowDescription || response == be::kNoData;
    case fe::kExecute:
      return response == be::kCommandComplete || response == be::kEmptyQueryResponse ||
             response == be::kPortalSuspended;
    case fe::kClose:
      return response == be::kCloseComplete;
    default:
      return false;
  }
}

inline bool ends_at_ready(char request) {
  return request == protocol::fe::kSync || request == protocol::fe::kQuery ||
         request == protocol::fe::kFunctionCall;
}

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
