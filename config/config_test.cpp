#include "config/config.h"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "config/auth_config_test_util.h"

namespace pgmux::config {
namespace {

using namespace std::chrono_literals;
using namespace auth_test_util;

constexpr std::string_view kOneDatabase = R"([databases.app]
url = "postgresql://alice:s3cret@db.internal:5433/appdb"
)";

std::string validate_error(const Config& c) {
  protocol::Status s = validate(c);
  REQUIRE_FALSE(s.ok());
  return s.error().message;
}

TEST_CASE("defaults mirror the documented ones") {
  Config c;
  CHECK(c.listen_host == "127.0.0.1");
  CHECK(c.listen_port == 6432);
  CHECK(c.max_client_conn == 10000);
  CHECK(c.max_server_connections == 15);
  CHECK(c.min_server_connections == 5);
  CHECK(c.query_wait_timeout == 30s);
  CHECK(c.server_lifetime == 1h);
  CHECK(c.client_login_timeout == 60s);
  CHECK(c.server_idle_timeout == 10min);
  CHECK(c.server_check_delay == 30s);
  CHECK(c.server_connect_timeout == 5s);
  CHECK(c.server_retry_initial == 500ms);
  CHECK(c.server_retry_max == 8s);
  CHECK(c.server_probe_interval == 250ms);
  CHECK(c.max_message_size == 1024u * 1024u * 1024u);
  CHECK(c.log_level == "info");
  CHECK(c.databases.empty());
  CHECK(validate(valid_config()).ok());
}

TEST_CASE("durations") {
  CHECK(*parse_duration("250ms") == 250ms);
  CHECK(*parse_duration("30s") == 30s);
  CHECK(*parse_duration("30") == 30s);
  CHECK(*parse_duration("5m") == 5min);
  CHECK(*parse_duration("1h") == 1h);
  CHECK(*parse_duration("1d") == 24h);
  CHECK(*parse_duration("0") == 0s);
  for (std::string_view bad : {"", "s", "-5s", "1.5s", "10 s", "10sec", "5M", " 5s", "1h30m",
                               "99999999999999999999", "9999999999999999d"}) {
    CAPTURE(bad);
    Result<Duration> d = parse_duration(bad);
    REQUIRE_FALSE(d.ok());
    CHECK(contains(d.error().message, "duration"));
  }
}

TEST_CASE("database URL: URI") {
  Result<Upstream> u =
      parse_database_url("postgresql://alice:p%40ss%2Fw@db.example.com:6543/sales");
  REQUIRE(u.ok());
  CHECK(u->user == "alice");
  CHECK(u->password == "p@ss/w");
  CHECK(u->host == "db.example.com");
  CHECK(u->port == 6543);
  CHECK(u->dbname == "sales");
  CHECK(u->application_name == "pgmux");
  CHECK(u->endpoint() == "db.example.com:6543");

  u = parse_database_url("postgres://bob@/?sslmode=require&application_name=etl");
  REQUIRE(u.ok());
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == 5432);
  CHECK(u->dbname == "bob");  // Defaults to the user, as in libpq.
  CHECK(u->password.empty());
  CHECK(u->application_name == "etl");

  u = parse_database_url("postgresql://carol@[::1]:5433/x");
  REQUIRE(u.ok());
  CHECK(u->host == "::1");
  CHECK(u->endpoint() == "[::1]:5433");
}

TEST_CASE("database URL: key=value") {
  Result<Upstream> u = parse_database_url(
      "host=10.0.0.7 port=5544 user=dave password='a b\\'c' dbname=inv "
      "sslmode=verify-full");
  REQUIRE(u.ok());
  CHECK(u->host == "10.0.0.7");
  CHECK(u->port == 5544);
  CHECK(u->user == "dave");
  CHECK(u->password == "a b'c");
  CHECK(u->dbname == "inv");
}

TEST_CASE("database URL: refused forms name the fix") {
  Result<Upstream> u = parse_database_url("postgresql://alice@%2Fvar%2Frun%2Fpostgresql/app");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "Unix-domain socket"));
  CHECK(contains(u.error().message, "127.0.0.1"));

  u = parse_database_url("host=/tmp user=alice");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "TCP"));

  u = parse_database_url("postgresql://alice@h1:5432,h2:5432/app");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "several hosts"));

  u = parse_database_url("postgresql://alice@h1:notaport/app");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "port"));

  u = parse_database_url("postgresql://alice:p@ss@h1/app");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "percent-encoded"));

  u = parse_database_url("postgresql://alice:p/ss@h1/app");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "percent-encoded"));

  u = parse_database_url("host=h1 bogus=1");
  REQUIRE_FALSE(u.ok());
  CHECK(contains(u.error().message, "bogus"));
}

TEST_CASE("TOML with every key and databases") {
  constexpr std::string_view kToml = R"(
listen = "[::1]:7000"
max_client_conn = 500
client_login_timeout = "15s"
max_server_connections = 20
min_server_connections = 2
query_wait_timeout = 45
server_lifetime = "2h"
server_idle_timeout = "5m"
server_check_delay = "0"
server_connect_timeout = "3s"
server_retry_initial = "250ms"
server_retry_max = "1m"
server_probe_interval = "100ms"
max_message_size = 65536
max_prepared_statements = 50
session_pinning = "refuse"
max_pinned_server_connections = 4
log_level = "debug"
database_url = "postgresql://svc:pw@10.1.1.1/svcdb"

[databases.app]
url = "postgresql://alice:fromurl@db.internal:5433/appdb"
password = "override"

[databases.reports]
url = "host=replica.internal user=reporter dbname=appdb"
)";
  Result<Config> r = parse_toml(kToml, "pgmux.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  const Config& c = *r;
  CHECK(c.listen_host == "::1");
  CHECK(c.listen_port == 7000);
  CHECK(c.max_client_conn == 500);
  CHECK(c.client_login_timeout == 15s);
  CHECK(c.max_server_connections == 20);
  CHECK(c.min_server_connections == 2);
  CHECK(c.query_wait_timeout == 45s);
  CHECK(c.server_lifetime == 2h);
  CHECK(c.server_idle_timeout == 5min);
  CHECK(c.server_check_delay == 0s);
  CHECK(c.server_connect_timeout == 3s);
  CHECK(c.server_retry_initial == 250ms);
  CHECK(c.server_retry_max == 1min);
  CHECK(c.server_probe_interval == 100ms);
  CHECK(c.max_message_size == 65536);
  CHECK(c.max_prepared_statements == 50);
  CHECK(c.session_pinning == SessionPinning::kRefuse);
  CHECK(c.max_pinned_server_connections == 4);
  CHECK(c.effective_max_pinned() == 4);
  CHECK(c.log_level == "debug");
  REQUIRE(c.databases.size() == 3);
  const Database* app = c.find_database("app");
  REQUIRE(app != nullptr);
  CHECK(app->upstream.dbname == "appdb");
  CHECK(app->upstream.password == "override");
  CHECK(app->upstream.endpoint() == "db.internal:5433");
  REQUIRE(c.find_database("reports") != nullptr);
  CHECK(c.find_database("reports")->upstream.user == "reporter");
  REQUIRE(c.find_database("svcdb") != nullptr);
  CHECK(c.find_database("svcdb")->upstream.password == "pw");
  CHECK(c.find_database("appdb") == nullptr);  // Clients use the table name.
  CHECK(validate(c).ok());
}

TEST_CASE("TOML: non-ASCII text outside strings is refused before toml++ sees it") {
  // toml++ 3.3.0 reaches __builtin_unreachable() on these (its issues #190
  // and #295); found by tests/fuzz/fuzz_toml.cpp.
  Result<Config> r = parse_toml("max_cl= \xd0\xa0\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "p.toml:1:9: a non-ASCII character outside a string"));
  r = parse_toml("log_level = \"\"\"\\\n\xc2\xa7\"\"\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "p.toml:2:1: a non-ASCII character right after a backslash"));

  // A quote glued to a bare value is no string start: toml++ reads on as
  // part of the value (found by fuzz_toml, after the two above).
  r = parse_toml("database_url =0\\\"x\xc2\xa2\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "p.toml:1:17: a quote in the middle of a bare word"));
  r = parse_toml("max_client_conn = 2x''''ab\xd0\x97\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "p.toml:1:21: a quote in the middle of a bare word"));
  r = parse_toml("log_level = x\"\xc2\xa2\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "a quote in the middle of a bare word"));
  // Quoted keys, dotted keys, arrays and inline tables still start strings.
  r = parse_toml(
      "allowed_cidrs = [\"127.0.0.1/32\",'10.0.0.0/8']\n[databases.\"app\"]\n"
      "url = \"postgresql://a@h/d\"\n[users.'b\xc3\xbc']\npassword=\"p\"\n",
      "p.toml", Config{});
  CHECK(r.ok());

  // Inside strings and comments non-ASCII text is fine.
  r = parse_toml(std::string(kOneDatabase) +
                     "[users.\"j\xc3\xbcrgen\"] # \xc2\xa7 comment\n"
                     "password = \"\xd0\xa0\xd0\xb0 \\\" \xc2\xa7\"\n",
                 "p.toml", Config{});
  REQUIRE(r.ok());
  REQUIRE(r->users.size() == 1);
  CHECK(r->users[0].name == "j\xc3\xbcrgen");
  CHECK(r->users[0].password == "\xd0\xa0\xd0\xb0 \" \xc2\xa7");
}

TEST_CASE("TOML errors name the key, the place and the fix") {
  Result<Config> r = parse_toml("max_server_conns = 10\n", "pgmux.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "unknown key 'max_server_conns' in pgmux.toml:1:1"));
  CHECK(contains(r.error().message, "did you mean max_server_connections?"));
  CHECK(contains(r.error().message, "query_wait_timeout"));  // The list of valid keys.

  r = parse_toml("[databases.app]\nurl = \"postgresql://a@h/d\"\npasword = \"x\"\n", "p.toml",
                 Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "unknown key 'pasword' in [databases.app] at p.toml:3:1"));
  CHECK(contains(r.error().message, "did you mean password?"));

  r = parse_toml(std::string(kOneDatabase) + "log_level = \"warn\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "move top-level keys above the first [databases.NAME]"));

  r = parse_toml("frobnicate = 1\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK_FALSE(contains(r.error().message, "did you mean"));

  r = parse_toml("max_client_conn = \"lots\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "p.toml:1:19: max_client_conn must be an integer"));

  r = parse_toml("query_wait_timeout = 1.5\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "query_wait_timeout must be a duration"));

  r = parse_toml("query_wait_timeout = \"soon\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "query_wait_timeout: invalid duration 'soon'"));

  r = parse_toml("listen = 6432\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "listen must be a string"));

  r = parse_toml("listen = \"::1:6432\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "brackets"));

  r = parse_toml("max_client_conn = -1\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "max_client_conn"));

  r = parse_toml("[databases.app]\npassword = \"x\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "[databases.app] has no url"));

  r = parse_toml("log_level = \"loud\"\n", "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "log_level"));
}

TEST_CASE("TOML syntax errors carry file:line:column and do not throw") {
  Result<Config> r =
      parse_toml("listen = \"127.0.0.1:6432\"\nmax_client_conn = = 3\n", "pgmux.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "pgmux.toml:2:"));
}

TEST_CASE("password_file overrides the URL's password, without its newline") {
  TempFile secret("pgmux-config-test-password", "from-file\n");
  std::string toml =
      "[databases.app]\nurl = \"postgresql://alice:fromurl@h/appdb\"\n"
      "password_file = \"" +
      secret.path() + "\"\n";
  Result<Config> r = parse_toml(toml, "p.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->find_database("app")->upstream.password == "from-file");

  r = parse_toml(
      "[databases.app]\nurl = \"postgresql://a@h/d\"\n"
      "password_file = \"/nonexistent/pgmux-secret\"\n",
      "p.toml", Config{});
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "password_file"));
}

TEST_CASE("load: file, DATABASE_URL, PGMUX_* overrides, in that order") {
  TempFile file("pgmux-config-test.toml",
                "max_server_connections = 12\nlog_level = \"warn\"\n" + std::string(kOneDatabase));
  LoadOptions options;
  options.config_path = file.path();
  options.getenv = env_of({
      {"DATABASE_URL", "postgresql://bob:envpw@env-host:5434/envdb"},
      {"PGMUX_MAX_SERVER_CONNECTIONS", "10"},
      {"PGMUX_MIN_SERVER_CONNECTIONS", "3"},
      {"PGMUX_QUERY_WAIT_TIMEOUT", "2m"},
      {"PGMUX_SERVER_LIFETIME", "600"},
      {"PGMUX_SERVER_PROBE_INTERVAL", "0"},
      {"PGMUX_LISTEN", "0.0.0.0:0"},
      {"PGMUX_LOG_LEVEL", ""},  // Empty counts as unset.
  });
  Result<Config> r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->max_server_connections == 10);
  CHECK(r->min_server_connections == 3);
  CHECK(r->query_wait_timeout == 2min);
  CHECK(r->server_lifetime == 600s);
  CHECK(r->server_probe_interval == 0ms);  // 0 turns probes off.
  CHECK(r->listen_host == "0.0.0.0");
  CHECK(r->listen_port == 0);
  CHECK(r->log_level == "warn");
  REQUIRE(r->databases.size() == 2);
  const Database* env_db = r->find_database("envdb");
  REQUIRE(env_db != nullptr);
  CHECK(env_db->upstream.endpoint() == "env-host:5434");
  CHECK(env_db->upstream.password == "envpw");
}

TEST_CASE("load: DATABASE_URL alone is enough and replaces a same-named table") {
  LoadOptions options;
  options.getenv = env_of({{"DATABASE_URL", "postgresql://alice@h/app"}});
  Result<Config> r = load(options);
  REQUIRE(r.ok());
  REQUIRE(r->databases.size() == 1);
  CHECK(r->databases[0].name == "app");

  TempFile file("pgmux-config-test-replace.toml", kOneDatabase);
  options.config_path = file.path();
  options.getenv = env_of({{"DATABASE_URL", "postgresql://zed@other/app"}});
  r = load(options);
  REQUIRE(r.ok());
  REQUIRE(r->databases.size() == 1);
  CHECK(r->find_database("app")->upstream.user == "zed");
}

TEST_CASE("load: errors name the variable or the file") {
  LoadOptions options;
  options.getenv =
      env_of({{"DATABASE_URL", "postgresql://a@h/d"}, {"PGMUX_MAX_SERVER_CONNECTIONS", "fifteen"}});
  Result<Config> r = load(options);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "PGMUX_MAX_SERVER_CONNECTIONS must be an integer"));

  options.getenv = env_of({{"DATABASE_URL", "postgresql://a@h/d"}, {"PGMUX_LISTEN", "nope"}});
  r = load(options);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "PGMUX_LISTEN"));

  options.getenv = env_of({{"DATABASE_URL", "postgresql://a@/tmp/d?host=/tmp"}});
  r = load(options);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "DATABASE_URL"));

  options.getenv = env_of({});
  r = load(options);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "no database configured"));

  options.config_path = "/nonexistent/pgmux.toml";
  r = load(options);
  REQUIRE_FALSE(r.ok());
  CHECK(contains(r.error().message, "/nonexistent/pgmux.toml"));
}

TEST_CASE("validate: every rule names its key") {
  Config c = valid_config();
  c.databases.clear();
  CHECK(contains(validate_error(c), "no database configured"));

  c = valid_config();
  c.max_server_connections = 0;
  CHECK(contains(validate_error(c), "max_server_connections"));
  c.max_server_connections = 10001;
  CHECK(contains(validate_error(c), "max_server_connections"));

  c = valid_config();
  c.min_server_connections = 16;
  std::string message = validate_error(c);
  CHECK(contains(message, "min_server_connections"));
  CHECK(contains(message, "max_server_connections"));

  for (Duration Config::*field :
       {&Config::client_login_timeout, &Config::query_wait_timeout, &Config::server_lifetime,
        &Config::server_idle_timeout, &Config::server_connect_timeout,
        &Config::server_retry_initial, &Config::server_retry_max}) {
    c = valid_config();
    c.*field = Duration::zero();
    CHECK(contains(validate_error(c), "must be greater than zero"));
  }
  c = valid_config();
  c.query_wait_timeout = Duration::zero();
  CHECK(contains(validate_error(c), "query_wait_timeout"));
  c = valid_config();
  c.server_check_delay = Duration::zero();
  CHECK(validate(c).ok());
  c.server_check_delay = -1s;
  CHECK(contains(validate_error(c), "server_check_delay"));

  c = valid_config();
  c.server_retry_initial = 10s;
  CHECK(contains(validate_error(c), "server_retry_initial"));

  c = valid_config();
  c.server_probe_interval = Duration::zero();
  CHECK(validate(c).ok());
  c.server_probe_interval = -1ms;
  CHECK(contains(validate_error(c), "server_probe_interval"));

  c = valid_config();
  c.max_message_size = 8191;
  CHECK(contains(validate_error(c), "max_message_size"));

  c = valid_config();
  c.log_level = "verbose";
  CHECK(contains(validate_error(c), "log_level"));

  c = valid_config();
  c.max_client_conn = 0;
  CHECK(contains(validate_error(c), "max_client_conn"));

  c = valid_config();
  c.databases.push_back(c.databases[0]);
  CHECK(contains(validate_error(c), "configured twice"));

  c = valid_config();
  c.databases[0].name.clear();
  CHECK(contains(validate_error(c), "empty name"));

  c = valid_config();
  c.databases[0].upstream.user.clear();
  CHECK(contains(validate_error(c), "has no user"));
}

TEST_CASE("no error message contains the password") {
  const std::string password = "Sup3rS3cret";
  std::vector<std::string> messages;
  auto collect = [&](const auto& result) {
    CAPTURE(messages.size());
    REQUIRE_FALSE(result.ok());
    messages.push_back(result.error().message);
  };
  collect(parse_database_url("postgresql://alice:" + password + "@/var/run/x?host=/tmp"));
  collect(parse_database_url("postgresql://alice:" + password + "%zz@h/d"));
  collect(parse_database_url("postgresql://alice:" + password + "@h1,h2/d"));
  collect(parse_database_url("postgresql://alice:x@" + password + "@h/d"));
  collect(parse_database_url("postgresql://alice:x/" + password + "@h/d"));
  collect(parse_database_url("postgresql://alice:x@" + password + ":" + password + "@h/d"));
  collect(parse_database_url("host=h user=alice password='" + password));
  collect(parse_database_url("host=h password=" + password + " " + password + "x"));
  collect(
      parse_toml("[databases.app]\nurl = \"postgresql://a:" + password + "@h:99999/d\"\nfoo = 1\n",
                 "p.toml", Config{}));
  collect(parse_toml("[databases.app]\nurl = \"postgresql://a:" + password + "@h:99999/d\"\n",
                     "p.toml", Config{}));
  collect(parse_toml("[databases.app]\nurl = \"postgresql://a@h/d\"\npassword = 5\n", "p.toml",
                     Config{}));
  Result<Config> no_user = parse_toml(
      "[databases.app]\nurl = \"postgresql://:" + password + "@h/d\"\n", "p.toml", Config{});
  REQUIRE(no_user.ok());
  collect(validate(*no_user));
  LoadOptions options;
  options.getenv = env_of({{"DATABASE_URL", "postgresql://alice:" + password + "@%2Ftmp/d"}});
  collect(load(options));
  for (const std::string& m : messages) {
    CAPTURE(m);
    CHECK_FALSE(m.empty());
    CHECK_FALSE(contains(m, password));
  }
}

}  // namespace
}  // namespace pgmux::config

namespace pgmux::config {
namespace {

TEST_CASE("transaction-mode keys: defaults, bad values named with their fix") {
  Config c;
  CHECK(c.max_prepared_statements == 200);
  CHECK(c.session_pinning == SessionPinning::kPin);
  CHECK(c.effective_max_pinned() == 7);  // Half of 15.
  c.max_server_connections = 1;
  CHECK(c.effective_max_pinned() == 1);

  Result<Config> bad = parse_toml("session_pinning = \"sometimes\"\n", "pgmux.toml", Config{});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message.find("pin") != std::string::npos);
  CHECK(bad.error().message.find("refuse") != std::string::npos);

  Config too_many;
  too_many.databases.push_back(Database{"app", Upstream{}});
  too_many.max_pinned_server_connections = 16;
  protocol::Status status = validate(too_many);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message.find("max_pinned_server_connections") != std::string::npos);

  Config zero;
  zero.databases.push_back(Database{"app", Upstream{}});
  zero.max_prepared_statements = 0;
  status = validate(zero);
  REQUIRE_FALSE(status.ok());
  CHECK(status.error().message.find("max_prepared_statements") != std::string::npos);
}

TEST_CASE("busy_poll_us: off by default, from TOML and PGMUX_*, at most 1000") {
  CHECK(Config{}.busy_poll_us == 0);
  Result<Config> r = parse_toml("busy_poll_us = 50\n", "p.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->busy_poll_us == 50);

  LoadOptions options;
  options.getenv = env_of({{"DATABASE_URL", "postgresql://a@h/d"}, {"PGMUX_BUSY_POLL_US", "20"}});
  r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->busy_poll_us == 20);

  Config config;
  config.databases.push_back(Database{"app", Upstream{}});
  config.busy_poll_us = 1000;
  protocol::Status at_max = validate(config);
  CHECK((at_max.ok() || !contains(at_max.error().message, "busy_poll_us")));
  config.busy_poll_us = 1001;
  protocol::Status status = validate(config);
  REQUIRE_FALSE(status.ok());
  CHECK(contains(status.error().message, "busy_poll_us must be at most 1000"));
  CHECK_FALSE(parse_toml("busy_poll_us = -1\n", "p.toml", Config{}).ok());
}

TEST_CASE("operations keys: defaults, TOML, PGMUX_* and bad values") {
  const Config defaults;
  CHECK(defaults.admin_users.empty());
  CHECK(defaults.stats_users.empty());
  CHECK_FALSE(defaults.metrics_enabled());
  CHECK(defaults.shutdown_timeout == 30s);
  CHECK_FALSE(defaults.so_reuseport);
  CHECK(defaults.log_format == LogFormat::kText);
  CHECK(defaults.stats_period == 60s);

  Result<Config> r = parse_toml(R"(admin_users = ["ops", "sre"]
stats_users = ["exporter"]
metrics_listen = "0.0.0.0:9930"
shutdown_timeout = "2m"
so_reuseport = true
log_format = "json"
stats_period = "15s"
)",
                                "p.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->admin_users == std::vector<std::string>{"ops", "sre"});
  CHECK(r->stats_users == std::vector<std::string>{"exporter"});
  CHECK(r->metrics_host == "0.0.0.0");
  CHECK(r->metrics_port == 9930);
  CHECK(r->metrics_enabled());
  CHECK(r->shutdown_timeout == 2min);
  CHECK(r->so_reuseport);
  CHECK(r->log_format == LogFormat::kJson);
  CHECK(r->stats_period == 15s);

  LoadOptions options;
  options.getenv = env_of({{"DATABASE_URL", "postgresql://a@h/d"},
                           {"PGMUX_ADMIN_USERS", "ops, sre"},
                           {"PGMUX_SO_REUSEPORT", "on"},
                           {"PGMUX_METRICS_LISTEN", "127.0.0.1:0"},
                           {"PGMUX_LOG_FORMAT", "json"}});
  r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->admin_users == std::vector<std::string>{"ops", "sre"});
  CHECK(r->so_reuseport);
  CHECK(r->metrics_host == "127.0.0.1");
  CHECK(r->metrics_port == 0);
  CHECK(r->log_format == LogFormat::kJson);

  CHECK(contains(error_of(parse_toml("so_reuseport = \"maybe\"\n", "p.toml", Config{})),
                 "so_reuseport must be true or false"));
  CHECK(contains(error_of(parse_toml("log_format = \"xml\"\n", "p.toml", Config{})),
                 "use one of text, json"));
  CHECK(contains(error_of(parse_toml("metrics_listen = \"9930\"\n", "p.toml", Config{})),
                 "metrics_listen: invalid listen address"));
  CHECK(contains(error_of(parse_toml("admin_users = \"ops\"\n", "p.toml", Config{})),
                 "admin_users must be an array of user names"));
  CHECK(contains(error_of(parse_toml("stats_users = [\"\"]\n", "p.toml", Config{})),
                 "stats_users has an empty entry"));

  Config same = valid_config();
  same.metrics_host = same.listen_host;
  same.metrics_port = same.listen_port;
  CHECK(contains(error_of(validate(same)), "metrics_listen is the same address as listen"));
  Config zero = valid_config();
  zero.shutdown_timeout = Duration::zero();
  CHECK(contains(error_of(validate(zero)), "shutdown_timeout must be greater than zero"));
}

TEST_CASE("budget sharing keys: defaults, TOML, PGMUX_* and bad values") {
  const Config defaults;
  CHECK(defaults.budget_sharing == BudgetSharing::kAdaptive);
  CHECK(defaults.budget_survey_interval == 1s);

  Result<Config> r =
      parse_toml("budget_sharing = \"off\"\nbudget_survey_interval = \"0\"\n", "p.toml", Config{});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->budget_sharing == BudgetSharing::kOff);
  CHECK(r->budget_survey_interval == 0s);

  LoadOptions options;
  options.getenv = env_of({{"DATABASE_URL", "postgresql://a@h/d"},
                           {"PGMUX_BUDGET_SHARING", "off"},
                           {"PGMUX_BUDGET_SURVEY_INTERVAL", "250ms"}});
  r = load(options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->budget_sharing == BudgetSharing::kOff);
  CHECK(r->budget_survey_interval == 250ms);

  CHECK(contains(error_of(parse_toml("budget_sharing = \"shared\"\n", "p.toml", Config{})),
                 "one of adaptive, off"));
  CHECK(contains(error_of(parse_toml("budget_sharing = true\n", "p.toml", Config{})),
                 "budget_sharing"));
  Result<Config> negative = parse_toml(std::string(kOneDatabase), "p.toml", Config{});
  REQUIRE(negative.ok());
  negative->budget_survey_interval = -1s;
  CHECK(contains(validate_error(*negative), "budget_survey_interval must not be negative"));
}

}  // namespace
}  // namespace pgmux::config
