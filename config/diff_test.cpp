#include "config/diff.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace pgmux::config {
namespace {

Config parsed(const std::string& toml) {
  Result<Config> c = parse_toml(toml, "test.toml", Config{});
  REQUIRE(c.ok());
  return *c;
}

constexpr const char* kBase = R"(
listen = "127.0.0.1:6432"
max_server_connections = 10
[databases.app]
url = "postgresql://alice:s3cret@db:5432/app"
[databases.reports]
url = "postgresql://bob:pw@db:5432/reports"
[users.alice]
password = "one"
[users.carol]
password = "two"
)";

using Names = std::vector<std::string>;

TEST_CASE("diff: an identical configuration changes nothing") {
  CHECK(diff(parsed(kBase), parsed(kBase)).empty());
}

TEST_CASE("diff: live keys (pool sizes, timeouts, log level) need no restart") {
  std::string changed = kBase;
  changed.insert(0, "log_level = \"debug\"\nquery_wait_timeout = \"5s\"\n");
  changed.replace(changed.find("= 10"), 4, "= 20");
  CHECK(diff(parsed(kBase), parsed(changed)).empty());
}

TEST_CASE("diff: databases added, removed and reconnected") {
  const std::string after = R"(
listen = "127.0.0.1:6432"
[databases.app]
url = "postgresql://alice:new@db:5432/app"
[databases.billing]
url = "postgresql://dan:pw@db2:5432/billing"
[users.alice]
password = "one"
[users.carol]
password = "two"
)";
  const ConfigDiff d = diff(parsed(kBase), parsed(after));
  CHECK(d.added_databases == Names{"billing"});
  CHECK(d.removed_databases == Names{"reports"});
  CHECK(d.reconnect_databases == Names{"app"});
  CHECK(d.changed_users.empty());
  CHECK(d.restart_keys.empty());
}

TEST_CASE("diff: each upstream connection setting means new servers") {
  const Upstream base;
  auto differs = [&](auto change) {
    Upstream u = base;
    change(u);
    return !same_connection(base, u);
  };
  CHECK_FALSE(differs([](Upstream&) {}));
  CHECK(differs([](Upstream& u) { u.host = "other"; }));
  CHECK(differs([](Upstream& u) { u.port = 6543; }));
  CHECK(differs([](Upstream& u) { u.user = "x"; }));
  CHECK(differs([](Upstream& u) { u.password = "x"; }));
  CHECK(differs([](Upstream& u) { u.dbname = "x"; }));
  CHECK(differs([](Upstream& u) { u.application_name = "x"; }));
  CHECK(differs([](Upstream& u) { u.sslmode = SslMode::kRequire; }));
  CHECK(differs([](Upstream& u) { u.sslrootcert = "/ca.pem"; }));
  CHECK(differs([](Upstream& u) { u.sslsni = false; }));
}

TEST_CASE("diff: users whose password changed or who are gone") {
  std::string after = kBase;
  after.replace(after.find("\"one\""), 5, "\"uno\"");
  after.erase(after.find("[users.carol]"));
  after += "[users.erin]\npassword = \"three\"\n";
  const ConfigDiff d = diff(parsed(kBase), parsed(after));
  CHECK(d.changed_users == Names{"alice", "carol"});
  CHECK(d.added_databases.empty());
}

TEST_CASE("diff: the listeners, client TLS and log_format need a restart") {
  const std::string after = std::string(R"(
so_reuseport = true
log_format = "json"
metrics_listen = "127.0.0.1:9090"
busy_poll_us = 50
)") + std::string(kBase).replace(std::string(kBase).find("6432"), 4, "7432");
  const ConfigDiff d = diff(parsed(kBase), parsed(after));
  CHECK(d.restart_keys ==
        Names{"listen", "so_reuseport", "metrics_listen", "log_format", "busy_poll_us"});
  CHECK(d.reconnect_databases.empty());
}

}  // namespace
}  // namespace pgmux::config
