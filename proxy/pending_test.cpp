#include "proxy/pending.h"

#include <doctest/doctest.h>

#include <string>

namespace pgmux::proxy {
namespace {

std::string requests(PendingQueue& queue) {
  std::string out;
  PendingQueue copy;
  while (!queue.empty()) {
    const Pending entry = queue.pop();
    out += entry.request;
    copy.push(entry);
  }
  while (!copy.empty()) queue.push(copy.pop());
  return out;
}

TEST_CASE("PendingQueue::erase_after_front keeps the front and the order of the rest") {
  PendingQueue queue;
  // Wrap the ring first, so the erase walks across its end.
  for (int i = 0; i < 14; ++i) queue.push(Pending{'X'});
  for (int i = 0; i < 14; ++i) queue.pop();
  for (char request : std::string("ESPSBSS")) queue.push(Pending{request});
  const size_t dropped = queue.erase_after_front([](const Pending& p) { return p.request == 'S'; });
  CHECK(dropped == 4);
  CHECK(requests(queue) == "EPB");

  PendingQueue lone;
  lone.push(Pending{'S'});
  CHECK(lone.erase_after_front([](const Pending&) { return true; }) == 0);
  CHECK(requests(lone) == "S");
}

}  // namespace
}  // namespace pgmux::proxy
