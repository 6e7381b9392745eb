// IntrusiveList: order, O(1) unlink from anywhere, the linked() state, and
// one object on two lists at once through two link tags.
#include "proxy/list.h"

#include <doctest/doctest.h>

#include <vector>

namespace pgmux::proxy {
namespace {

struct QueueLink : ListNode {};
struct IndexLink : ListNode {};

struct Item : QueueLink, IndexLink {
  explicit Item(int v) : value(v) {}
  int value;
};

using Queue = IntrusiveList<Item, QueueLink>;
using Index = IntrusiveList<Item, IndexLink>;

bool on_queue(const Item& item) { return static_cast<const QueueLink&>(item).linked(); }
bool on_index(const Item& item) { return static_cast<const IndexLink&>(item).linked(); }

// The values front to back, walked with next().
template <class List>
std::vector<int> values(const List& list) {
  std::vector<int> out;
  for (Item* item = list.front(); item != nullptr; item = list.next(item))
    out.push_back(item->value);
  return out;
}

// Checks the links from back to front too: a wrong prev pointer would not
// show in a forward walk.
template <class Tag>
std::vector<int> values_backwards(const IntrusiveList<Item, Tag>& list) {
  std::vector<int> out;
  Item* back = list.back();
  if (back == nullptr) return out;
  const ListNode* sentinel = static_cast<Tag*>(list.front())->prev;
  for (const ListNode* n = static_cast<Tag*>(back); n != sentinel; n = n->prev) {
    out.push_back(static_cast<const Item*>(static_cast<const Tag*>(n))->value);
  }
  return out;
}

TEST_CASE("IntrusiveList: an empty list") {
  Queue queue;
  CHECK(queue.empty());
  CHECK(queue.size() == 0);
  CHECK(queue.front() == nullptr);
  CHECK(queue.back() == nullptr);
  CHECK(queue.pop_front() == nullptr);
  CHECK(queue.empty());  // pop_front on an empty list changes nothing.
  CHECK(queue.size() == 0);
}

TEST_CASE("IntrusiveList: push_back is FIFO, push_front goes ahead of everything") {
  Item a(1), b(2), c(3), d(4);
  Queue queue;
  queue.push_back(&a);
  queue.push_back(&b);
  queue.push_front(&c);
  queue.push_back(&d);
  CHECK(queue.size() == 4);
  CHECK_FALSE(queue.empty());
  CHECK(values(queue) == std::vector<int>{3, 1, 2, 4});
  CHECK(values_backwards(queue) == std::vector<int>{4, 2, 1, 3});
  CHECK(queue.front() == &c);
  CHECK(queue.back() == &d);
  CHECK(queue.next(&c) == &a);
  CHECK(queue.next(&d) == nullptr);

  CHECK(queue.pop_front() == &c);
  CHECK_FALSE(on_queue(c));
  CHECK(queue.size() == 3);
  CHECK(queue.pop_front() == &a);
  CHECK(queue.pop_front() == &b);
  CHECK(queue.pop_front() == &d);
  CHECK(queue.pop_front() == nullptr);
  CHECK(queue.empty());
  CHECK(queue.size() == 0);
  for (Item* item : {&a, &b, &c, &d}) CHECK_FALSE(on_queue(*item));
}

TEST_CASE("IntrusiveList: remove from the middle, the head and the tail") {
  Item a(1), b(2), c(3), d(4), e(5);
  Queue queue;
  for (Item* item : {&a, &b, &c, &d, &e}) queue.push_back(item);
  REQUIRE(queue.size() == 5);

  queue.remove(&c);  // Middle.
  CHECK_FALSE(on_queue(c));
  CHECK(queue.size() == 4);
  CHECK(values(queue) == std::vector<int>{1, 2, 4, 5});
  CHECK(values_backwards(queue) == std::vector<int>{5, 4, 2, 1});

  queue.remove(&a);  // Head.
  CHECK(queue.front() == &b);
  CHECK(queue.size() == 3);
  CHECK(values(queue) == std::vector<int>{2, 4, 5});

  queue.remove(&e);  // Tail.
  CHECK(queue.back() == &d);
  CHECK(queue.next(&d) == nullptr);
  CHECK(queue.size() == 2);
  CHECK(values(queue) == std::vector<int>{2, 4});
  CHECK(values_backwards(queue) == std::vector<int>{4, 2});

  // The removed items can go back on, at either end.
  queue.push_front(&e);
  queue.push_back(&a);
  CHECK(values(queue) == std::vector<int>{5, 2, 4, 1});

  queue.remove(&b);
  queue.remove(&d);
  queue.remove(&e);
  queue.remove(&a);  // The last one: the list is empty again and usable.
  CHECK(queue.empty());
  CHECK(queue.front() == nullptr);
  CHECK(queue.back() == nullptr);
  queue.push_back(&c);
  CHECK(queue.front() == &c);
  CHECK(queue.back() == &c);
  CHECK(queue.size() == 1);
  queue.remove(&c);
  CHECK(queue.empty());
}

TEST_CASE("IntrusiveList: linked() follows membership") {
  Item a(1);
  Queue queue;
  CHECK_FALSE(on_queue(a));
  queue.push_back(&a);
  CHECK(on_queue(a));
  queue.remove(&a);
  CHECK_FALSE(on_queue(a));
  queue.push_front(&a);
  CHECK(on_queue(a));
  CHECK(queue.pop_front() == &a);
  CHECK_FALSE(on_queue(a));
}

TEST_CASE("IntrusiveList: one object on two lists through two link tags") {
  Item a(1), b(2), c(3);
  Queue queue;
  Index index;
  queue.push_back(&a);
  queue.push_back(&b);
  queue.push_back(&c);
  index.push_front(&a);
  index.push_front(&b);
  index.push_front(&c);
  CHECK(values(queue) == std::vector<int>{1, 2, 3});
  CHECK(values(index) == std::vector<int>{3, 2, 1});

  // Leaving one list leaves the other untouched.
  queue.remove(&b);
  CHECK_FALSE(on_queue(b));
  CHECK(on_index(b));
  CHECK(values(queue) == std::vector<int>{1, 3});
  CHECK(values(index) == std::vector<int>{3, 2, 1});
  CHECK(index.size() == 3);

  CHECK(index.pop_front() == &c);
  CHECK(on_queue(c));
  CHECK_FALSE(on_index(c));
  CHECK(values(queue) == std::vector<int>{1, 3});
  CHECK(values(index) == std::vector<int>{2, 1});

  queue.remove(&a);
  queue.remove(&c);
  index.remove(&a);
  index.remove(&b);
  CHECK(queue.empty());
  CHECK(index.empty());
  for (Item* item : {&a, &b, &c}) {
    CHECK_FALSE(on_queue(*item));
    CHECK_FALSE(on_index(*item));
  }
}

TEST_CASE("IntrusiveList: removing while walking, next() taken first") {
  // The pattern of Pool's and Proxy's sweeps.
  std::vector<Item> items;
  items.reserve(6);
  for (int i = 1; i <= 6; ++i) items.emplace_back(i);
  Queue queue;
  for (Item& item : items) queue.push_back(&item);
  for (Item* item = queue.front(); item != nullptr;) {
    Item* next = queue.next(item);
    if (item->value % 2 == 0) queue.remove(item);
    item = next;
  }
  CHECK(values(queue) == std::vector<int>{1, 3, 5});
  CHECK(values_backwards(queue) == std::vector<int>{5, 3, 1});
  CHECK(queue.size() == 3);
  while (queue.pop_front() != nullptr) {
  }
  CHECK(queue.empty());
}

}  // namespace
}  // namespace pgmux::proxy
