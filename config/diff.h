// What changed between two validated configurations, for a reload: which
// databases came, went or must reconnect their servers, which users'
// passwords changed, and which changed keys a running pgmux cannot apply.
// Pure: no I/O, no logging (the proxy logs what it applies).
#pragma once

#include <string>
#include <vector>

#include "config/config.h"

namespace pgmux::config {

struct ConfigDiff {
  // Databases (by client-facing name) only in the new configuration.
  std::vector<std::string> added_databases;
  // Databases only in the old configuration.
  std::vector<std::string> removed_databases;
  // Databases in both whose upstream connection settings differ (host, port,
  // user, password, dbname, application_name, sslmode and TLS files, sslsni):
  // their servers must be replaced.
  std::vector<std::string> reconnect_databases;
  // Users whose stored password changed, or who are gone.
  std::vector<std::string> changed_users;
  // Keys that changed but take effect only after a restart (listen,
  // so_reuseport, client_tls*, metrics_listen, log_format), by key name.
  std::vector<std::string> restart_keys;

  bool empty() const {
    return added_databases.empty() && removed_databases.empty() && reconnect_databases.empty() &&
           changed_users.empty() && restart_keys.empty();
  }
};

// REQUIRES: both passed validate().
ConfigDiff diff(const Config& before, const Config& after);

// Whether two upstreams would open identical server connections.
bool same_connection(const Upstream& a, const Upstream& b);

}  // namespace pgmux::config
