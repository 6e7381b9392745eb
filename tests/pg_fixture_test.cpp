// Sanity check of the fixture itself: the server starts, and each upstream
// authentication method it promises in pg_fixture.h really is in force.
#include "tests/pg_fixture.h"

#include <doctest/doctest.h>
#include <libpq-fe.h>

#include <stdexcept>
#include <string>

namespace pgmux::testing {
namespace {

// Returns "" on success, else libpq's error message.
std::string try_login(const PgServer& pg, const char* user, const char* password) {
  std::string url = pg.url(user, password) + "?connect_timeout=10";
  PGconn* conn = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
    if (error.empty()) error = "connection failed";
  } else {
    PGresult* res = PQexec(conn, "select current_user || '@' || current_database()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
      error = PQerrorMessage(conn);
    } else if (std::string(PQgetvalue(res, 0, 0)) != std::string(user) + "@" + kAppDatabase) {
      error = std::string("unexpected identity ") + PQgetvalue(res, 0, 0);
    }
    PQclear(res);
  }
  PQfinish(conn);
  return error;
}

TEST_CASE("PgServer starts PostgreSQL with the promised roles and auth methods") {
  PgServer pg;
  CHECK(pg.host() == "127.0.0.1");
  CHECK(pg.port() != 0);
  CHECK(pg.query_value("select 1") == "1");
  CHECK(pg.query_value("select null").empty());
  CHECK(pg.query_value("show server_version_num").substr(0, 2) == "15");

  // pg_hba.conf picks the method per user; the stored hash must match it.
  CHECK(pg.query_value("select left(rolpassword, 3) from pg_authid where rolname = 'app_md5'") ==
        "md5");
  CHECK(pg.query_value("select left(rolpassword, 13) from pg_authid where rolname = "
                       "'app_scram'") == "SCRAM-SHA-256");

  CHECK(try_login(pg, kScramUser, kScramPassword).empty());
  CHECK(try_login(pg, kMd5User, kMd5Password).empty());
  CHECK(try_login(pg, kPlainUser, kPlainPassword).empty());
  for (const char* user : {kScramUser, kMd5User, kPlainUser}) {
    CAPTURE(user);
    std::string error = try_login(pg, user, "wrong-password");
    CHECK(error.find("password authentication failed") != std::string::npos);
  }

  // Every app role may create tables in app's public schema (PostgreSQL 15
  // does not grant that by default).
  pg.exec("set role app_md5; create table fixture_probe (id int); drop table fixture_probe",
          kAppDatabase);
  CHECK_THROWS_AS(pg.exec("select * from no_such_table"), std::runtime_error);
}

// Connects as kScramUser over TLS with verify-full against `root_cert`.
// Returns "" plus pg_stat_ssl's verdict in `ssl`, or libpq's error.
std::string try_tls_login(const PgServer& pg, const std::string& root_cert, std::string* ssl) {
  // hostaddr skips DNS; libpq still checks the certificate against `host`.
  const std::string conninfo =
      "host=localhost hostaddr=127.0.0.1 port=" + std::to_string(pg.port()) +
      " user=" + kScramUser + " password=" + kScramPassword + " dbname=" + kAppDatabase +
      " sslmode=verify-full sslrootcert='" + root_cert + "' connect_timeout=10";
  PGconn* conn = PQconnectdb(conninfo.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
    if (error.empty()) error = "connection failed";
  } else {
    PGresult* res = PQexec(conn, "select ssl from pg_stat_ssl where pid = pg_backend_pid()");
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
      error = PQerrorMessage(conn);
      if (error.empty()) error = "no pg_stat_ssl row";
    } else {
      *ssl = PQgetvalue(res, 0, 0);
    }
    PQclear(res);
  }
  PQfinish(conn);
  return error;
}

TEST_CASE("PgServer with ssl = true serves TLS with the test PKI's server certificate") {
  const TestPki& pki = test_pki();
  PgOptions options;
  options.ssl = true;
  PgServer pg(options);
  CHECK(pg.query_value("show ssl") == "on");

  std::string ssl;
  CHECK(try_tls_login(pg, pki.ca_cert, &ssl).empty());
  CHECK(ssl == "t");

  std::string unused;
  const std::string error = try_tls_login(pg, pki.other_ca_cert, &unused);
  CAPTURE(error);
  CHECK(error.find("certificate verify failed") != std::string::npos);
}

}  // namespace
}  // namespace pgmux::testing
