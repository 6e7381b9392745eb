// Link, the relay of one pairing, on a real loop without PostgreSQL. Each
// connection pgmux holds is one end of a loopback TCP pair (port 0): the
// test holds the other ends, one playing the application and one playing
// PostgreSQL. Fake connections implement LinkClient and LinkServer and hand
// the Link their events as ClientConn and ServerConn do; a real Pool (with a
// fake PoolHost) provides the statement registry and the pin count. The loop
// is driven until a condition holds; a watchdog bounds each wait.
#include "proxy/link.h"

#include <doctest/doctest.h>

#include "proxy/link_test_fixture.h"

namespace pgmux::proxy {
namespace {
using namespace link_test;

// ---- The cases --------------------------------------------------------------

TEST_CASE("Link: a simple Query and its answers pass unchanged; release after 'I' only") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    f.link.begin(c.conn);
    const std::string q = query("SELECT 1");
    c.app.send(q);
    CHECK_RECEIVED(f, f.pg, q);

    const std::string rows = row_description() + data_row("1") + command_complete("SELECT 1");
    f.pg.send(rows);
    CHECK_RECEIVED(f, c.app, rows);
    CHECK(f.server.released == 0);  // No ReadyForQuery yet.
    CHECK(f.link.active());

    f.pg.send(ready('I'));
    CHECK(f.run_until([&] { return f.server.released > 0; }));
    CHECK_RECEIVED(f, c.app, rows + ready('I'));
    CHECK(f.server.released == 1);
    CHECK(f.server.clean_at_release);
    CHECK_FALSE(f.link.active());
    CHECK(f.server.closes.empty());
    CHECK(c.conn.failures.empty());
  });
}

TEST_CASE("Link: ReadyForQuery 'T' keeps the server; 'I' after COMMIT releases it") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    f.link.begin(c.conn);
    c.app.send(query("BEGIN"));
    CHECK_RECEIVED(f, f.pg, query("BEGIN"));
    const std::string in_block = command_complete("BEGIN") + ready('T');
    f.pg.send(in_block);
    CHECK_RECEIVED(f, c.app, in_block);
    CHECK(f.server.released == 0);
    CHECK(f.link.active());
    CHECK_FALSE(f.link.clean());

    c.app.send(query("COMMIT"));
    CHECK_RECEIVED(f, f.pg, query("BEGIN") + query("COMMIT"));
    const std::string done = command_complete("COMMIT") + ready('I');
    f.pg.send(done);
    CHECK_RECEIVED(f, c.app, in_block + done);
    CHECK(f.run_until([&] { return f.server.released > 0; }));
    CHECK(f.server.released == 1);
    CHECK_FALSE(f.link.active());
  });
}

TEST_CASE("Link: a named Parse is renamed for the server, and a second one is answered by pgmux") {
  with_fixture([](Fixture& f) {
    // First pairing: the statement is prepared on the server as pgmux_1.
    ClientPair& a = f.add_client();
    f.link.begin(a.conn);
    a.app.send(parse("s1", "SELECT 1") + bind("s1") + execute() + sync());
    CHECK_RECEIVED(f, f.pg, parse("pgmux_1", "SELECT 1") + bind("pgmux_1") + execute() + sync());
    const std::string answers = parse_complete() + bind_complete() + data_row("1") +
                                command_complete("SELECT 1") + ready('I');
    f.pg.send(answers);
    CHECK_RECEIVED(f, a.app, answers);
    CHECK(f.run_until([&] { return f.server.released == 1; }));
    CHECK_FALSE(f.link.active());
    CHECK(f.server.statements().size() == 1);
    CHECK(f.pool.statements().size() == 1);

    // Second pairing, another client, the same text under another name:
    // no Parse reaches the server, and pgmux answers ParseComplete first.
    ClientPair& b = f.add_client();
    f.link.begin(b.conn);
    const std::string before = f.pg.received;
    b.app.send(parse("other", "SELECT 1") + bind("other") + execute() + sync());
    CHECK_RECEIVED(f, f.pg, before + bind("pgmux_1") + execute() + sync());
    const std::string from_server =
        bind_complete() + data_row("1") + command_complete("SELECT 1") + ready('I');
    f.pg.send(from_server);
    CHECK_RECEIVED(f, b.app, parse_complete() + from_server);
    CHECK(f.run_until([&] { return f.server.released == 2; }));
    CHECK(f.server.released == 2);
    CHECK(f.server.clean_at_release);
    CHECK(f.pool.statements().size() == 1);  // One statement shared by both names.
    CHECK(a.app.received == answers);        // Nothing more for the first client.
  });
}

TEST_CASE("Link: an error in an extended pipeline reaches the client and the server is released") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    f.link.begin(c.conn);
    c.app.send(parse("bad", "SELEC 1") + bind("bad") + execute() + sync());
    CHECK_RECEIVED(f, f.pg, parse("pgmux_1", "SELEC 1") + bind("pgmux_1") + execute() + sync());

    protocol::Bytes error;
    protocol::append_error_response(error, "ERROR", "42601", "syntax error at or near \"SELEC\"");
    f.pg.send(error + ready('I'));
    CHECK_RECEIVED(f, c.app, error + ready('I'));
    CHECK(f.run_until([&] { return f.server.released > 0; }));
    CHECK(f.server.released == 1);
    CHECK(f.server.clean_at_release);
    CHECK(f.link.clean());
    CHECK(f.server.closes.empty());
    // The failed Parse is undone: neither the client's name nor the
    // server's entry remains.
    ClientStatements* names = c.conn.statements(false);
    REQUIRE(names != nullptr);
    CHECK(names->find("bad") == nullptr);
    CHECK(f.server.statements().size() == 0);
  });
}

TEST_CASE("Link: a message with an invalid length fails the client with 08P01") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    f.link.begin(c.conn);
    c.app.send(std::string("Q\0\0\0\x02", 5));
    REQUIRE(f.run_until([&] { return !c.conn.failures.empty(); }));
    CHECK(c.conn.failures == std::vector<std::string>{"08P01"});
    CHECK_FALSE(f.link.active());
    CHECK(f.server.released == 1);  // Clean: nothing was sent to it.
    CHECK(f.await_marker(f.server.stream(), f.pg) == printable(marker()));
  });
}

TEST_CASE("Link: Terminate closes the client and is not forwarded") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    f.link.begin(c.conn);
    protocol::Bytes terminate;
    protocol::append_terminate(terminate);
    c.app.send(terminate);
    CHECK(f.run_until([&] { return !c.conn.closes.empty(); }));
    CHECK(c.conn.closes == std::vector<std::string>{"Terminate"});
    CHECK(c.conn.failures.empty());
    CHECK_FALSE(f.link.active());
    CHECK(f.server.released == 1);
    CHECK(f.server.closes.empty());
    CHECK(f.await_marker(f.server.stream(), f.pg) == printable(marker()));
  });
}

TEST_CASE("Link: a departing client releases a clean server and closes one inside a transaction") {
  SUBCASE("clean") {
    with_fixture([](Fixture& f) {
      ClientPair& c = f.add_client();
      f.link.begin(c.conn);
      CHECK(f.link.clean());
      f.link.on_client_departed();
      CHECK(f.server.released == 1);
      CHECK(f.server.closes.empty());
      CHECK_FALSE(f.link.active());
      CHECK(c.conn.servers_lost == 0);
    });
  }
  SUBCASE("inside a transaction") {
    with_fixture([](Fixture& f) {
      ClientPair& c = f.add_client();
      f.link.begin(c.conn);
      c.app.send(query("BEGIN"));
      CHECK_RECEIVED(f, f.pg, query("BEGIN"));
      f.pg.send(command_complete("BEGIN") + ready('T'));
      CHECK_RECEIVED(f, c.app, command_complete("BEGIN") + ready('T'));
      f.link.on_client_departed();
      CHECK(f.server.released == 0);
      CHECK(f.server.closes.size() == 1);
      CHECK_FALSE(f.link.active());
      CHECK(c.conn.servers_lost == 0);  // The client left; nobody to tell.
    });
  }
}

TEST_CASE("Link: LISTEN pins the client to its server until the pairing ends") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    f.link.begin(c.conn);
    CHECK(f.pool.upstream().pinned() == 0);
    c.app.send(query("LISTEN x"));
    CHECK_RECEIVED(f, f.pg, query("LISTEN x"));
    CHECK(f.link.pinned());
    CHECK(f.pool.upstream().pinned() == 1);

    const std::string answers = command_complete("LISTEN") + ready('I');
    f.pg.send(answers);
    CHECK_RECEIVED(f, c.app, answers);
    // Both directions are idle, yet the server stays with its client.
    CHECK(f.server.released == 0);
    CHECK(f.link.active());
    CHECK(f.link.pinned());
    CHECK(f.pool.upstream().pinned() == 1);

    f.link.end();
    CHECK_FALSE(f.link.pinned());
    CHECK(f.pool.upstream().pinned() == 0);
    CHECK(f.server.released == 0);
  });
}

TEST_CASE("Link: begin sends the session sync first and swallows its answers") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    c.conn.overrides().set("statement_timeout", "5000", /*sql=*/true);
    f.link.begin(c.conn);
    const ParamValue* synced = f.server.overrides().find("statement_timeout");
    REQUIRE(synced != nullptr);
    CHECK(synced->value == "5000");
    CHECK(synced->sql);

    c.app.send(query("SELECT 1"));
    const std::string sync_sql = query("SET statement_timeout TO 5000;");
    CHECK_RECEIVED(f, f.pg, sync_sql + query("SELECT 1"));

    const std::string answers =
        row_description() + data_row("1") + command_complete("SELECT 1") + ready('I');
    f.pg.send(command_complete("SET") + ready('I'));
    f.pg.send(answers);
    CHECK_RECEIVED(f, c.app, answers);
    CHECK(f.run_until([&] { return f.server.released > 0; }));
    CHECK(f.server.released == 1);
    CHECK(f.server.clean_at_release);
    CHECK(c.app.received == answers);
  });
}

TEST_CASE("Link: a pairing with the server's settings already in line sends no sync") {
  with_fixture([](Fixture& f) {
    ClientPair& c = f.add_client();
    c.conn.overrides().set("statement_timeout", "5000", /*sql=*/true);
    f.server.overrides().set("statement_timeout", "5000", /*sql=*/true);
    f.link.begin(c.conn);
    c.app.send(query("SELECT 1"));
    CHECK_RECEIVED(f, f.pg, query("SELECT 1"));
  });
}

}  // namespace
}  // namespace pgmux::proxy
