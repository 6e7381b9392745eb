#include "protocol/sql_scan.h"

#include <doctest/doctest.h>

#include <string>

namespace pgmux::protocol {
namespace {

// Scans `sql` and requires exactly one reported statement.
SqlStatement one(std::string_view sql) {
  const auto out = scan_sql(sql);
  INFO(sql);
  REQUIRE(out.size() == 1);
  CHECK(may_change_session(sql));
  return out[0];
}

void none(std::string_view sql) {
  INFO(sql);
  CHECK(scan_sql(sql).empty());
}

// ---- SET ----------------------------------------------------------------------

TEST_CASE("SET name = value and SET name TO value") {
  auto s = one("SET search_path = a, b");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "search_path");
  CHECK(s.value == "a, b");

  s = one("  set Statement_Timeout to '5s'  ;  ");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "Statement_Timeout");
  CHECK(s.value == "'5s'");

  s = one("SeT SESSION work_mem=64000");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "work_mem");
  CHECK(s.value == "64000");

  s = one("SET search_path TO 'a', b /* trailing */ -- and more\n");
  CHECK(s.name == "search_path");
  CHECK(s.value == "'a', b");

  s = one("SET extra_float_digits = -1");
  CHECK(s.value == "-1");
}

TEST_CASE("SET of qualified and quoted names") {
  auto s = one("SET myext.setting = 'on'");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "myext.setting");
  CHECK(s.value == "'on'");

  s = one("set \"MyExt\".\"Odd Name\" to 3");
  CHECK(s.name == "\"MyExt\".\"Odd Name\"");
  CHECK(s.value == "3");

  s = one("SET \"search_path\" = x");
  CHECK(s.name == "\"search_path\"");
}

TEST_CASE("SET ... DEFAULT") {
  auto s = one("SET search_path TO DEFAULT");
  CHECK(s.kind == SqlKind::kSetDefault);
  CHECK(s.name == "search_path");
  s = one("set session work_mem = default");
  CHECK(s.kind == SqlKind::kSetDefault);
  CHECK(s.name == "work_mem");
  s = one("SET TIME ZONE LOCAL");
  CHECK(s.kind == SqlKind::kSetDefault);
  CHECK(s.name == "TimeZone");
  // A quoted 'default' is a value, not the keyword.
  s = one("SET application_name = 'default'");
  CHECK(s.kind == SqlKind::kSet);
}

TEST_CASE("SET special forms") {
  auto s = one("SET TIME ZONE 'Europe/Paris'");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "TimeZone");
  CHECK(s.value == "'Europe/Paris'");

  s = one("set time zone interval '+02:00' hour to minute");
  CHECK(s.name == "TimeZone");
  CHECK(s.value == "interval '+02:00' hour to minute");

  s = one("SET NAMES 'UTF8'");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "client_encoding");
  CHECK(s.value == "'UTF8'");

  s = one("set schema 'app'");
  CHECK(s.kind == SqlKind::kSet);
  CHECK(s.name == "search_path");
  CHECK(s.value == "'app'");

  s = one("SET SESSION TIME ZONE 'UTC'");
  CHECK(s.name == "TimeZone");
}

TEST_CASE("SET that cannot be tracked") {
  for (std::string_view sql :
       {"SET SESSION AUTHORIZATION alice", "set session authorization default", "SET ROLE admin",
        "set role none", "SET SESSION ROLE admin",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SET search_path FROM CURRENT", "SET session_authorization = 'bob'"}) {
    CHECK(one(sql).kind == SqlKind::kSetUntrackable);
  }
}

TEST_CASE("transaction-scoped SET is not reported") {
  none("SET LOCAL search_path = a");
  none("set local statement_timeout to 0");
  none("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
  none("SET CONSTRAINTS ALL DEFERRED");
  none("set constraints c1 immediate");
}

// ---- RESET --------------------------------------------------------------------

TEST_CASE("RESET") {
  auto s = one("RESET search_path");
  CHECK(s.kind == SqlKind::kReset);
  CHECK(s.name == "search_path");
  s = one("reset myext.setting");
  CHECK(s.name == "myext.setting");
  CHECK(one("RESET ALL").kind == SqlKind::kResetAll);
  CHECK(one("reset all").kind == SqlKind::kResetAll);
  s = one("RESET TIME ZONE");
  CHECK(s.kind == SqlKind::kReset);
  CHECK(s.name == "TimeZone");
  CHECK(one("RESET SESSION AUTHORIZATION").kind == SqlKind::kSetUntrackable);
  CHECK(one("reset role").kind == SqlKind::kSetUntrackable);
  none("RESET TRANSACTION ISOLATION LEVEL");
}

// ---- Prepared statements ------------------------------------------------------

TEST_CASE("PREPARE, EXECUTE, DEALLOCATE") {
  auto s = one("PREPARE q1 AS SELECT 1");
  CHECK(s.kind == SqlKind::kPrepare);
  CHECK(s.name == "q1");
  CHECK(s.body == "SELECT 1");

  s = one("prepare Q2 (int, text, numeric(10, 2)) as  select $1, $2 ; ");
  CHECK(s.kind == SqlKind::kPrepare);
  CHECK(s.name == "Q2");
  CHECK(s.body == "select $1, $2");

  s = one("PREPARE \"Quoted\" AS SELECT 'a;b'");
  CHECK(s.name == "\"Quoted\"");
  CHECK(s.body == "SELECT 'a;b'");

  none("PREPARE TRANSACTION 'gid-1'");

  s = one("EXECUTE q1");
  CHECK(s.kind == SqlKind::kExecute);
  CHECK(s.name == "q1");
  s = one("execute q2(1, 'x')");
  CHECK(s.kind == SqlKind::kExecute);
  CHECK(s.name == "q2");

  s = one("DEALLOCATE q1");
  CHECK(s.kind == SqlKind::kDeallocate);
  CHECK(s.name == "q1");
  s = one("deallocate prepare q1");
  CHECK(s.kind == SqlKind::kDeallocate);
  CHECK(s.name == "q1");
  CHECK(one("DEALLOCATE ALL").kind == SqlKind::kDeallocateAll);
  CHECK(one("Deallocate Prepare All").kind == SqlKind::kDeallocateAll);
}

// ---- DISCARD, LISTEN, LOAD ------------------------------------------------------

TEST_CASE("DISCARD") {
  CHECK(one("DISCARD ALL").kind == SqlKind::kDiscardAll);
  CHECK(one("discard all").kind == SqlKind::kDiscardAll);
  for (std::string_view sql :
       {"DISCARD PLANS", "discard sequences", "DISCARD TEMP", "Discard Temporary"}) {
    CHECK(one(sql).kind == SqlKind::kDiscardOther);
  }
}

TEST_CASE("LISTEN and UNLISTEN") {
  auto s = one("LISTEN events");
  CHECK(s.kind == SqlKind::kListen);
  CHECK(s.name == "events");
  s = one("listen \"Mixed\"");
  CHECK(s.name == "\"Mixed\"");
  s = one("UNLISTEN events");
  CHECK(s.kind == SqlKind::kUnlisten);
  CHECK(s.name == "events");
  s = one("unlisten *");
  CHECK(s.kind == SqlKind::kUnlisten);
  CHECK(s.name == "*");
}

TEST_CASE("LOAD") {
  auto s = one("LOAD 'auto_explain'");
  CHECK(s.kind == SqlKind::kLoad);
  CHECK(s.name == "'auto_explain'");
  CHECK(one("load '$libdir/plugins/x'").kind == SqlKind::kLoad);
}

// ---- Advisory locks -----------------------------------------------------------

TEST_CASE("session-level advisory locks anywhere in a statement") {
  for (std::string_view sql :
       {"SELECT pg_advisory_lock(1)", "select PG_ADVISORY_LOCK (1, 2)",
        "SELECT pg_advisory_lock_shared(42)", "SELECT pg_try_advisory_lock(7)",
        "select x from t where pg_try_advisory_lock_shared(id)",
        "SELECT pg_catalog.pg_advisory_lock(1)", "SELECT pg_advisory_lock /* c */ (1)",
        "SELECT \"pg_advisory_lock\"(1)"}) {
    CHECK(one(sql).kind == SqlKind::kAdvisoryLock);
  }
}

TEST_CASE("transaction-level advisory locks and non-calls are not reported") {
  none("SELECT pg_advisory_xact_lock(1)");
  none("SELECT pg_try_advisory_xact_lock_shared(1)");
  none("SELECT pg_advisory_unlock(1)");
  none("SELECT 'pg_advisory_lock(1)'");
  none("SELECT 1 -- pg_advisory_lock(1)");
  none("SELECT pg_advisory_lock_count FROM t");
  none("SELECT \"PG_ADVISORY_LOCK\"(1)");  // Quoted: a different function.
}

// ---- Temporary objects and cursors -----------------------------------------------

TEST_CASE("CREATE TEMP") {
  for (std::string_view sql :
       {"CREATE TEMP TABLE t (a int)", "create temporary table t(a int)",
        "CREATE GLOBAL TEMPORARY TABLE t (a int)", "create local temp table t (a int)",
        "CREATE TEMP VIEW v AS SELECT 1", "CREATE OR REPLACE TEMP VIEW v AS SELECT 1",
        "CREATE TEMP SEQUENCE s", "CREATE TEMP TABLE IF NOT EXISTS t (a int)",
        "CREATE TABLE pg_temp.t (a int)", "create view PG_TEMP.v as select 1",
        "CREATE TEMP TABLE t ON COMMIT PRESERVE ROWS AS SELECT 1",
        "CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS", "SELECT * INTO TEMP TABLE t FROM u",
        "select 1 as a into temporary t"}) {
    CHECK(one(sql).kind == SqlKind::kCreateTemp);
  }
  CHECK(one("CREATE TEMP TABLE foo (a int)").name == "foo");
  CHECK(one("CREATE TABLE pg_temp.foo (a int)").name == "pg_temp.foo");
}

TEST_CASE("CREATE TEMP ... ON COMMIT DROP and ordinary tables are not reported") {
  none("CREATE TEMP TABLE t (a int) ON COMMIT DROP");
  none("create temporary table t on commit drop as select 1");
  none("CREATE TEMP TABLE t (a int) On   Commit /* x */ Drop");
  none("CREATE TABLE pg_temp.t (a int) ON COMMIT DROP");
  none("CREATE TABLE t (a int)");
  none("CREATE TABLE temp (a int)");
  none("CREATE TABLE pg_temporal.t (a int)");
  none("INSERT INTO temp VALUES (1)");
  none("SELECT a INTO temp FROM t");  // A table called temp.
  // ON COMMIT DROP inside a string does not count.
  CHECK(one("CREATE TEMP TABLE t AS SELECT 'on commit drop' AS x").kind == SqlKind::kCreateTemp);
}

TEST_CASE("DECLARE ... WITH HOLD") {
  auto s = one("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
  CHECK(s.kind == SqlKind::kDeclareWithHold);
  CHECK(s.name == "c");
  CHECK(one("declare c binary no scroll cursor with hold for select 1").kind ==
        SqlKind::kDeclareWithHold);
  none("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1");
  none("DECLARE c CURSOR FOR SELECT 1");
  none("DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold");
}

// ---- Quoting, comments, several statements -------------------------------------------

TEST_CASE("strings, identifiers and comments are not code") {
  none("SELECT 'set search_path = x'");
  none("SELECT 'it''s; set search_path = x'");
  none("SELECT E'it\\'s; set search_path = x'");
  none("SELECT e'\\\\'; SELECT 'set search_path = x'");
  none("SELECT \"set search_path = x\"");
  none("SELECT \"a\"\"; set search_path = x\"");
  none("-- set search_path = x\nSELECT 1");
  none("/* set search_path = x */ SELECT 1");
  none("/* outer /* inner */ set search_path = x; */ SELECT 1");
  none("SELECT $$; set search_path = x$$");
  none("SELECT $tag$ $$; set search_path = x; $$ $tag$");
  none("SELECT 1 /* unterminated; set search_path = x");
  none("SELECT 'unterminated; set search_path = x");
  // A leading comment does not hide a statement.
  auto s = one("/* hi */ -- there\n  SET search_path = a");
  CHECK(s.name == "search_path");
}

TEST_CASE("dollar-quoted function bodies are not scanned") {
  none(
      "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$\n"
      "BEGIN\n"
      "  SET search_path = x;\n"
      "  PERFORM pg_advisory_lock(1);\n"
      "  CREATE TEMP TABLE t (a int);\n"
      "END $$");
  none(
      "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; RESET ALL; $body$ LANGUAGE sql;"
      "SELECT f()");
  // $1 is a parameter, not a dollar quote: the SET after it is seen.
  const auto out = scan_sql("SELECT $1; SET search_path = a");
  REQUIRE(out.size() == 1);
  CHECK(out[0].kind == SqlKind::kSet);
}

TEST_CASE("several statements in one query") {
  auto out = scan_sql("BEGIN; SET search_path = a; COMMIT");
  REQUIRE(out.size() == 1);
  CHECK(out[0].kind == SqlKind::kSet);
  CHECK(out[0].name == "search_path");
  CHECK(out[0].value == "a");

  out = scan_sql(
      "set local work_mem = 1;;; SELECT 'x;y'; PREPARE p AS SELECT 1; EXECUTE p;"
      "LISTEN c; select pg_advisory_lock(1); DISCARD ALL");
  REQUIRE(out.size() == 5);
  CHECK(out[0].kind == SqlKind::kPrepare);
  CHECK(out[1].kind == SqlKind::kExecute);
  CHECK(out[2].kind == SqlKind::kListen);
  CHECK(out[3].kind == SqlKind::kAdvisoryLock);
  CHECK(out[4].kind == SqlKind::kDiscardAll);
}

TEST_CASE("ordinary statements report nothing") {
  none("");
  none(" ; ;\n");
  none("SELECT * FROM t WHERE a = $1");
  none("UPDATE settings SET value = 1 WHERE name = 'x'");
  none("INSERT INTO t VALUES ('reset all')");
  none("ALTER ROLE alice SET search_path = a");
  none("CREATE FUNCTION f() RETURNS int SET search_path = a AS 'select 1' LANGUAGE sql");
  none("SELECT offset_set FROM prepared_execute");
}

// ---- may_change_session -------------------------------------------------------

TEST_CASE("may_change_session") {
  CHECK_FALSE(may_change_session("select * from t where a = $1"));
  CHECK_FALSE(may_change_session(""));
  CHECK_FALSE(may_change_session("SELECT id, name FROM users WHERE id = 42"));
  CHECK_FALSE(may_change_session("INSERT INTO t (a) VALUES (1) RETURNING a"));
  for (std::string_view sql :
       {"SET x = 1", "set x = 1", "RESET ALL", "PREPARE p AS SELECT 1", "Execute p", "DEALLOCATE p",
        "DISCARD ALL", "LISTEN c", "UNLISTEN *", "LOAD 'x'", "select pg_advisory_lock(1)",
        "CREATE TEMP TABLE t()", "CREATE TABLE pg_temp.t()",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "SET TIME ZONE 'UTC'", "sEt"}) {
    CHECK_MESSAGE(may_change_session(sql), sql);
  }
}

TEST_CASE("scan_sql counts every statement, empty ones excepted") {
  size_t n = 99;
  CHECK(scan_sql("set search_path = a", &n).size() == 1);
  CHECK(n == 1);
  CHECK(scan_sql("set a.b = 1; select 1;; ", &n).size() == 1);
  CHECK(n == 2);
  CHECK(scan_sql("select ';'; /* ; */ select $$;$$", &n).empty());
  CHECK(n == 2);
  CHECK(scan_sql("", &n).empty());
  CHECK(n == 0);
  CHECK(scan_sql("begin; set local statement_timeout = 1; commit", &n).empty());
  CHECK(n == 3);
}

}  // namespace
}  // namespace pgmux::protocol
