#include "proxy/buffer.h"

#include <doctest/doctest.h>

#include <cstring>

#include "proxy/list.h"

namespace pgmux::proxy {
namespace {

void receive(Buffer& buffer, const char* text) {
  std::span<uint8_t> tail = buffer.free_tail();
  const size_t n = std::strlen(text);
  REQUIRE(tail.size() >= n);
  std::memcpy(tail.data(), text, n);
  buffer.commit_received(n);
}

TEST_CASE("Buffer: cursors move from received to decided to sent") {
  BlockPool pool(64);
  Buffer buffer(pool);
  CHECK_FALSE(buffer.has_block());
  receive(buffer, "abcdef");
  CHECK(buffer.unparsed().size() == 6);
  buffer.mark_parsed(4);
  CHECK(buffer.pending().size() == 4);
  CHECK(buffer.unparsed().size() == 2);
  buffer.mark_sent();
  CHECK(buffer.pending().empty());
  CHECK_FALSE(buffer.empty());
  buffer.consume(2);
  CHECK(buffer.empty());
  buffer.shrink_if_empty();
  CHECK_FALSE(buffer.has_block());
  CHECK(pool.cached() == 1);
}

TEST_CASE("Buffer: a partial message moves to the front when the tail runs short") {
  BlockPool pool(64);
  Buffer buffer(pool);
  std::span<uint8_t> tail = buffer.free_tail();
  std::memset(tail.data(), 'x', 60);
  buffer.commit_received(60);
  buffer.mark_parsed(56);
  buffer.mark_sent();
  // Four undecided bytes at the end; the next free_tail compacts them.
  tail = buffer.free_tail();
  CHECK(tail.size() == 60);
  CHECK(buffer.unparsed().size() == 4);
}

TEST_CASE("Buffer: decided bytes never move while a write may reference them") {
  BlockPool pool(64);
  Buffer buffer(pool);
  std::span<uint8_t> tail = buffer.free_tail();
  std::memset(tail.data(), 'y', 62);
  buffer.commit_received(62);
  buffer.mark_parsed(30);  // Pending, not sent.
  const uint8_t* before = buffer.pending().data();
  (void)buffer.free_tail();
  CHECK(buffer.pending().data() == before);
}

struct Item : PoolLink {
  int value = 0;
};

TEST_CASE("IntrusiveList: FIFO order, O(1) removal from the middle") {
  IntrusiveList<Item, PoolLink> list;
  Item a, b, c;
  a.value = 1;
  b.value = 2;
  c.value = 3;
  list.push_back(&a);
  list.push_back(&b);
  list.push_back(&c);
  CHECK(list.size() == 3);
  list.remove(&b);
  CHECK_FALSE(b.linked());
  CHECK(list.pop_front()->value == 1);
  CHECK(list.pop_front()->value == 3);
  CHECK(list.empty());
  list.push_front(&a);
  list.push_front(&b);
  CHECK(list.front()->value == 2);
  CHECK(list.back()->value == 1);
  list.remove(&a);
  list.remove(&b);
}

}  // namespace
}  // namespace pgmux::proxy

namespace pgmux::proxy {
namespace {

TEST_CASE("trim frees only blocks that stayed cached through a whole period") {
  BlockPool pool(64);
  std::vector<uint8_t*> taken;
  for (int i = 0; i < 10; ++i) taken.push_back(pool.take());
  for (uint8_t* block : taken) pool.give_back(block);
  CHECK(pool.cached() == 10);
  CHECK(pool.trim(2) == 0);     // They were in use during this period.
  uint8_t* busy = pool.take();  // One is in use again: 9 stayed cached.
  CHECK(pool.trim(2) == 7);     // 9 idle, keep 2.
  CHECK(pool.cached() == 2);
  pool.give_back(busy);
  // Two stayed cached all period; above the floor of 2, one of the three goes.
  CHECK(pool.trim(2) == 1);
  CHECK(pool.cached() == 2);
  CHECK(pool.trim(2) == 0);  // Never below the floor.
}

}  // namespace
}  // namespace pgmux::proxy
