// SHOW CONFIG: pgmux's settings in PgBouncer's four columns. Durations are
// shown as pgmux writes them ("30s", "250ms"); databases as
// name=user@host:port/dbname, without their passwords.
#include <string>
#include <vector>

#include "proxy/admin_table.h"

namespace pgmux::proxy::admin_table {

namespace {

std::string duration_text(config::Duration d) {
  const auto ms = static_cast<uint64_t>(d.count());
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + "s" : std::to_string(ms) + "ms";
}

}  // namespace

void append_config_table(const config::Config& config, protocol::Bytes& out) {
  const config::Config defaults;
  Table table(out, {text("key"), text("value"), text("default"), text("changeable")});
  auto names = [](const std::vector<std::string>& list) {
    std::string joined;
    for (const std::string& name : list) joined += (joined.empty() ? "" : ",") + name;
    return joined;
  };
  auto cidrs = [](const std::vector<config::Cidr>& list) {
    std::string joined;
    for (const config::Cidr& cidr : list) joined += (joined.empty() ? "" : ",") + cidr.text;
    return joined;
  };
  auto listen = [](const std::string& host, uint16_t port) {
    return host.empty() ? std::string() : host + ":" + std::to_string(port);
  };
  // Databases as "name=user@host:port/dbname": never a password.
  std::string databases;
  for (const config::Database& db : config.databases) {
    databases += (databases.empty() ? "" : ",") + db.name + "=" + db.upstream.user + "@" +
                 db.upstream.endpoint() + "/" + db.upstream.dbname;
  }
  struct Key {
    const char* name;
    std::string value;
    std::string fallback;
    bool changeable;
  };
  const Key keys[] = {
      {"listen", listen(config.listen_host, config.listen_port),
       listen(defaults.listen_host, defaults.listen_port), false},
      {"max_client_conn", std::to_string(config.max_client_conn),
       std::to_string(defaults.max_client_conn), true},
      {"client_login_timeout", duration_text(config.client_login_timeout),
       duration_text(defaults.client_login_timeout), true},
      {"client_tls", std::string(config::to_string(config.effective_client_tls())),
       std::string(config::to_string(defaults.effective_client_tls())), true},
      {"client_tls_cert_file", config.client_tls_cert_file, "", true},
      {"client_tls_key_file", config.client_tls_key_file, "", true},
      {"auth_type", std::string(config::to_string(config.auth_type)),
       std::string(config::to_string(defaults.auth_type)), true},
      {"auth_file", config.auth_file, "", true},
      {"allowed_cidrs", cidrs(config.allowed_cidrs), "", true},
      {"auth_failure_delay", duration_text(config.auth_failure_delay),
       duration_text(defaults.auth_failure_delay), true},
      {"max_server_connections", std::to_string(config.max_server_connections),
       std::to_string(defaults.max_server_connections), true},
      {"min_server_connections", std::to_string(config.min_server_connections),
       std::to_string(defaults.min_server_connections), true},
      {"query_wait_timeout", duration_text(config.query_wait_timeout),
       duration_text(defaults.query_wait_timeout), true},
      {"server_lifetime", duration_text(config.server_lifetime),
       duration_text(defaults.server_lifetime), true},
      {"server_idle_timeout", duration_text(config.server_idle_timeout),
       duration_text(defaults.server_idle_timeout), true},
      {"server_check_delay", duration_text(config.server_check_delay),
       duration_text(defaults.server_check_delay), true},
      {"server_connect_timeout", duration_text(config.server_connect_timeout),
       duration_text(defaults.server_connect_timeout), true},
      {"server_retry_initial", duration_text(config.server_retry_initial),
       duration_text(defaults.server_retry_initial), true},
      {"server_retry_max", duration_text(config.server_retry_max),
       duration_text(defaults.server_retry_max), true},
      {"server_probe_interval", duration_text(config.server_probe_interval),
       duration_text(defaults.server_probe_interval), true},
      {"budget_sharing", std::string(config::to_string(config.budget_sharing)),
       std::string(config::to_string(defaults.budget_sharing)), true},
      {"budget_survey_interval", duration_text(config.budget_survey_interval),
       duration_text(defaults.budget_survey_interval), true},
      {"max_prepared_statements", std::to_string(config.max_prepared_statements),
       std::to_string(defaults.max_prepared_statements), true},
      {"session_pinning", std::string(config::to_string(config.session_pinning)),
       std::string(config::to_string(defaults.session_pinning)), true},
      {"max_pinned_server_connections", std::to_string(config.max_pinned_server_connections),
       std::to_string(defaults.max_pinned_server_connections), true},
      {"max_message_size", std::to_string(config.max_message_size),
       std::to_string(defaults.max_message_size), true},
      {"log_level", config.log_level, defaults.log_level, true},
      {"log_format", std::string(config::to_string(config.log_format)),
       std::string(config::to_string(defaults.log_format)), false},
      {"stats_period", duration_text(config.stats_period), duration_text(defaults.stats_period),
       true},
      {"admin_users", names(config.admin_users), "", true},
      {"stats_users", names(config.stats_users), "", true},
      {"metrics_listen", listen(config.metrics_host, config.metrics_port), "", false},
      {"shutdown_timeout", duration_text(config.shutdown_timeout),
       duration_text(defaults.shutdown_timeout), true},
      {"so_reuseport", config.so_reuseport ? "true" : "false",
       defaults.so_reuseport ? "true" : "false", false},
      {"busy_poll_us", std::to_string(config.busy_poll_us), std::to_string(defaults.busy_poll_us),
       false},
      {"databases", databases, "", true},
  };
  for (const Key& key : keys) {
    table.row({str(key.name), str(key.value), str(key.fallback), yes_no(key.changeable)});
  }
}

}  // namespace pgmux::proxy::admin_table
