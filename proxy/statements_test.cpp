#include "proxy/statements.h"

#include <doctest/doctest.h>

#include "proxy/pending.h"

namespace pgmux::proxy {
namespace {

protocol::ByteView no_types() { return {}; }

TEST_CASE("the registry gives one statement per text and types, and forgets it at zero") {
  StatementRegistry registry;
  Statement* a = registry.acquire("select 1", 0, no_types());
  Statement* b = registry.acquire("select 1", 0, no_types());
  CHECK(a == b);
  CHECK(a->refs == 2);
  CHECK(a->server_name == "pgmux_" + std::to_string(a->id));
  const uint8_t int4[] = {0, 0, 0, 23};
  Statement* typed = registry.acquire("select 1", 1, protocol::ByteView(int4, 4));
  CHECK(typed != a);
  CHECK(typed->id != a->id);
  CHECK(registry.find("select 1", 0, no_types()) == a);
  CHECK(registry.find("select 2", 0, no_types()) == nullptr);
  registry.release(a);
  registry.release(b);
  CHECK(registry.find("select 1", 0, no_types()) == nullptr);
  registry.release(typed);
  CHECK(registry.size() == 0);
}

TEST_CASE("a client's names hold references; forget drops every name of a statement") {
  StatementRegistry registry;
  {
    ClientStatements names(registry);
    Statement* s = registry.acquire("select 1", 0, no_types());
    names.add("one", s);
    names.add("uno", registry.acquire("select 1", 0, no_types()));
    CHECK(s->refs == 2);
    CHECK(names.find("one") == s);
    CHECK(names.remove("one"));
    CHECK_FALSE(names.remove("one"));
    CHECK(s->refs == 1);
    names.add("two", registry.acquire("select 2", 0, no_types()));
    names.forget(s);
    CHECK(names.find("uno") == nullptr);
    CHECK(names.size() == 1);
  }
  CHECK(registry.size() == 0);  // The destructor released the rest.
}

TEST_CASE("a server's statements are an LRU that hands back what it evicts") {
  StatementRegistry registry;
  ClientStatements owner(registry);  // Keeps the statements alive.
  Statement* s[4];
  for (int i = 0; i < 4; ++i) {
    s[i] = registry.acquire("select " + std::to_string(i), 0, no_types());
    owner.add("s" + std::to_string(i), s[i]);
  }
  ServerStatements server(registry, 2);
  CHECK(server.insert(s[0]) == nullptr);
  CHECK(server.insert(s[1]) == nullptr);
  CHECK(server.touch(s[0]));  // s[1] is now least recently used.
  Statement* evicted = server.insert(s[2]);
  CHECK(evicted == s[1]);
  CHECK_FALSE(server.contains(s[1]));
  CHECK(s[1]->refs == 2);  // The caller holds the server's reference now.
  registry.release(evicted);
  CHECK(server.contains(s[0]));
  CHECK(server.contains(s[2]));
  CHECK(server.insert(s[2]) == nullptr);  // Already there: only touched.
  server.restore(s[1]);                   // Back without evicting: over capacity by one.
  CHECK(server.size() == 3);
  CHECK(s[1]->refs == 2);
  server.restore(s[1]);  // Already there: no second reference.
  CHECK(s[1]->refs == 2);
  server.erase(s[1]);
  server.erase(s[0]);
  CHECK(server.size() == 1);
  CHECK(s[0]->refs == 1);
  server.clear();
  CHECK(s[2]->refs == 1);
}

TEST_CASE("the pending queue keeps order across growth and wrap-around") {
  PendingQueue queue;
  int next_in = 0;
  int next_out = 0;
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < round % 37 + 1; ++i) {
      queue.push(Pending{static_cast<char>('A' + next_in++ % 26)});
    }
    for (int i = 0; i < round % 23 + 1 && !queue.empty(); ++i) {
      CHECK(queue.pop().request == static_cast<char>('A' + next_out++ % 26));
    }
  }
  while (!queue.empty()) CHECK(queue.pop().request == static_cast<char>('A' + next_out++ % 26));
  CHECK(next_in == next_out);
}

TEST_CASE("which response completes which request") {
  CHECK(completes('P', '1'));
  CHECK(completes('B', '2'));
  CHECK(completes('D', 'T'));
  CHECK(completes('D', 'n'));
  CHECK_FALSE(completes('D', 't'));  // ParameterDescription comes first.
  CHECK(completes('E', 'C'));
  CHECK(completes('E', 'I'));
  CHECK(completes('E', 's'));
  CHECK_FALSE(completes('E', 'D'));
  CHECK(completes('C', '3'));
  CHECK_FALSE(completes('Q', 'Z'));  // ReadyForQuery is handled apart.
  CHECK(ends_at_ready('S'));
  CHECK(ends_at_ready('Q'));
  CHECK(ends_at_ready('F'));
  CHECK_FALSE(ends_at_ready('E'));
}

}  // namespace
}  // namespace pgmux::proxy
