#include "config/diff.h"

namespace pgmux::config {

bool same_connection(const Upstream& a, const Upstream& b) {
  return a.host == b.host && a.port == b.port && a.user == b.user && a.password == b.password &&
         a.dbname == b.dbname && a.application_name == b.application_name &&
         a.sslmode == b.sslmode && a.sslrootcert == b.sslrootcert && a.sslcert == b.sslcert &&
         a.sslkey == b.sslkey && a.sslsni == b.sslsni;
}

ConfigDiff diff(const Config& before, const Config& after) {
  ConfigDiff out;
  for (const Database& db : after.databases) {
    const Database* old = before.find_database(db.name);
    if (old == nullptr) {
      out.added_databases.push_back(db.name);
    } else if (!same_connection(old->upstream, db.upstream)) {
      out.reconnect_databases.push_back(db.name);
    }
  }
  for (const Database& db : before.databases) {
    if (after.find_database(db.name) == nullptr) out.removed_databases.push_back(db.name);
  }
  for (const User& user : before.users) {
    const User* now = after.find_user(user.name);
    if (now == nullptr || now->password != user.password) out.changed_users.push_back(user.name);
  }

  // The listeners and the client TLS context are set up once, at start.
  auto restart = [&](bool changed, const char* key) {
    if (changed) out.restart_keys.emplace_back(key);
  };
  restart(before.listen_host != after.listen_host || before.listen_port != after.listen_port,
          "listen");
  restart(before.so_reuseport != after.so_reuseport, "so_reuseport");
  restart(before.effective_client_tls() != after.effective_client_tls(), "client_tls");
  restart(before.client_tls_cert_file != after.client_tls_cert_file, "client_tls_cert_file");
  restart(before.client_tls_key_file != after.client_tls_key_file, "client_tls_key_file");
  restart(before.metrics_host != after.metrics_host || before.metrics_port != after.metrics_port,
          "metrics_listen");
  restart(before.log_format != after.log_format, "log_format");
  restart(before.busy_poll_us != after.busy_poll_us, "busy_poll_us");
  return out;
}

}  // namespace pgmux::config
