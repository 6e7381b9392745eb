// An intrusive doubly linked list: O(1) push, pop and unlink with no
// allocation. T derives from one tag type (itself derived from ListNode) per
// kind of list it can be on at a time, and must be unlinked before it is
// destroyed:  struct QueueLink : ListNode {};  class Client : QueueLink {...};
//             IntrusiveList<Client, QueueLink> queue;
#pragma once

#include <cassert>
#include <cstddef>

namespace pgmux::proxy {

struct ListNode {
  ListNode* prev = nullptr;
  ListNode* next = nullptr;
  bool linked() const { return prev != nullptr; }
};

template <class T, class Tag>
class IntrusiveList {
 public:
  IntrusiveList() { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const { return head_.next == &head_; }
  size_t size() const { return size_; }

  T* front() const { return empty() ? nullptr : owner(head_.next); }
  T* back() const { return empty() ? nullptr : owner(head_.prev); }
  // The element after `item`, or nullptr at the end.
  T* next(T* item) const {
    ListNode* n = static_cast<Tag*>(item)->next;
    return n == &head_ ? nullptr : owner(n);
  }

  void push_back(T* item) { insert_before(&head_, item); }
  void push_front(T* item) { insert_before(head_.next, item); }

  T* pop_front() {
    T* item = front();
    if (item != nullptr) remove(item);
    return item;
  }

  // REQUIRES: item is on this list.
  void remove(T* item) {
    ListNode& n = *static_cast<Tag*>(item);
    assert(n.linked());
    n.prev->next = n.next;
    n.next->prev = n.prev;
    n.prev = n.next = nullptr;
    --size_;
  }

 private:
  static T* owner(ListNode* n) { return static_cast<T*>(static_cast<Tag*>(n)); }
  void insert_before(ListNode* pos, T* item) {
    ListNode& n = *static_cast<Tag*>(item);
    assert(!n.linked());
    n.next = pos;
    n.prev = pos->prev;
    pos->prev->next = &n;
    pos->prev = &n;
    ++size_;
  }

  ListNode head_;
  size_t size_ = 0;
};

}  // namespace pgmux::proxy

namespace pgmux::proxy {

// The list tags pgmux's connections use.
struct PoolLink : ListNode {};   // One of a Pool's lists (opening, idle, waiting, ...).
struct LoginLink : ListNode {};  // The Proxy's list of clients still logging in.
// The Proxy's list of clients that have not sent a complete startup packet.
struct StartupLink : ListNode {};
struct CancelLink : ListNode {};  // The Proxy's list of cancel requests in flight.
// The Proxy's list of admin sessions waiting for a PAUSE or WAIT_CLOSE to finish.
struct AdminLink : ListNode {};

}  // namespace pgmux::proxy
