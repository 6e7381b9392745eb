#include "proxy/session_params.h"

#include <doctest/doctest.h>

namespace pgmux::proxy {
namespace {

TEST_CASE("parameter names are normalised, odd ones refused") {
  CHECK(normalise_param_name("TimeZone") == "timezone");
  CHECK(normalise_param_name("\"search_path\"") == "search_path");
  CHECK(normalise_param_name("myapp.tenant_id") == "myapp.tenant_id");
  CHECK_FALSE(normalise_param_name("").has_value());
  CHECK_FALSE(normalise_param_name("a;drop table x").has_value());
  CHECK_FALSE(normalise_param_name("a b").has_value());
}

TEST_CASE("find_unnormalised finds what find(normalise_param_name(name)) finds") {
  ParamOverrides overrides;
  overrides.set("timezone", "UTC", false);
  overrides.set("application_name", "app", false);
  overrides.set("myapp.tenant_id", "7", false);
  const char* names[] = {"TimeZone",
                         "timezone",
                         "\"TimeZone\"",
                         "\"timezone",
                         "Application_Name",
                         "MYAPP.TENANT_ID",
                         "myapp.tenant",
                         "",
                         "\"\"",
                         "\"",
                         "time zone",
                         "timezone;",
                         "DateStyle"};
  for (const char* name : names) {
    CAPTURE(name);
    std::optional<std::string> normal = normalise_param_name(name);
    const ParamValue* want = normal ? overrides.find(*normal) : nullptr;
    CHECK(overrides.find_unnormalised(name) == want);
  }
  CHECK(overrides.find_unnormalised("TimeZone") != nullptr);
  CHECK(overrides.find_unnormalised("DateStyle") == nullptr);
}

TEST_CASE("the sync sets what the client has and resets what only the server has") {
  ParamOverrides client;
  ParamOverrides server;
  std::string sql;
  append_param_sync(sql, client, server);
  CHECK(sql.empty());

  client.set("timezone", "Etc/GMT+1", false);
  client.set("search_path", "a, \"B\"", true);
  server.set("timezone", "Etc/GMT+1", false);  // Same: nothing to do.
  server.set("application_name", "other", false);
  append_param_sync(sql, client, server);
  CHECK(sql == "SET search_path TO a, \"B\";RESET application_name;");

  sql.clear();
  client.set("application_name", "it's \\ mine", false);
  append_param_sync(sql, client, server);
  CHECK(sql ==
        "SET search_path TO a, \"B\";"
        "SELECT pg_catalog.set_config(E'application_name', E'it''s \\\\ mine', false);");

  CHECK(client.erase("timezone"));
  CHECK_FALSE(client.erase("timezone"));
  CHECK(client.find("search_path")->sql);
  client.erase_if_not([](std::string_view name) { return name == "application_name"; });
  CHECK(client.items().size() == 1);
}

TEST_CASE("startup options: -c, --name=value, escaped spaces; others ignored") {
  StartupOptions o = parse_startup_options(
      "-c search_path=a,b --statement-timeout=5s -cwork_mem=64MB -c "
      "application_name=with\\ space -D ignored");
  REQUIRE(o.settings.size() == 4);
  CHECK(o.settings[0] == std::pair<std::string, std::string>("search_path", "a,b"));
  CHECK(o.settings[1] == std::pair<std::string, std::string>("statement_timeout", "5s"));
  CHECK(o.settings[2] == std::pair<std::string, std::string>("work_mem", "64MB"));
  CHECK(o.settings[3] == std::pair<std::string, std::string>("application_name", "with space"));
  REQUIRE(o.ignored.size() == 2);
  CHECK(o.ignored[0] == "-D");
  CHECK(o.ignored[1] == "ignored");
}

}  // namespace
}  // namespace pgmux::proxy
