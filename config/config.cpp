// The types in config.h: lookups by name, the enums' spellings, and the
// add-or-replace helpers that the TOML reader and the environment share.
#include "config/config.h"

#include <string>
#include <string_view>
#include <utility>

#include "config/scalar_keys.h"

namespace pgmux::config {

std::string Upstream::endpoint() const {
  // An IPv6 literal needs brackets so that the port stays unambiguous.
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

const Database* Config::find_database(std::string_view name) const {
  for (const Database& db : databases) {
    if (db.name == name) return &db;
  }
  return nullptr;
}

const User* Config::find_user(std::string_view name) const {
  for (const User& user : users) {
    if (user.name == name) return &user;
  }
  return nullptr;
}

std::string_view to_string(AuthType type) {
  switch (type) {
    case AuthType::kTrust:
      return "trust";
    case AuthType::kScramSha256:
      return "scram-sha-256";
    case AuthType::kMd5:
      return "md5";
    case AuthType::kPassword:
      return "password";
  }
  return "unknown";
}

std::string_view to_string(LogFormat format) {
  return format == LogFormat::kJson ? "json" : "text";
}

std::string_view to_string(BudgetSharing sharing) {
  return sharing == BudgetSharing::kOff ? "off" : "adaptive";
}

std::string_view to_string(SessionPinning policy) {
  switch (policy) {
    case SessionPinning::kPin:
      return "pin";
    case SessionPinning::kRefuse:
      return "refuse";
  }
  return "unknown";
}

std::string_view to_string(ClientTls mode) {
  switch (mode) {
    case ClientTls::kDisable:
      return "disable";
    case ClientTls::kAllow:
      return "allow";
    case ClientTls::kRequire:
      return "require";
  }
  return "unknown";
}

namespace detail {

void put_database(Config& config, Database database) {
  for (Database& existing : config.databases) {
    if (existing.name == database.name) {
      existing = std::move(database);
      return;
    }
  }
  config.databases.push_back(std::move(database));
}

void put_user(Config& config, User user) {
  for (User& existing : config.users) {
    if (existing.name == user.name) {
      existing = std::move(user);
      return;
    }
  }
  config.users.push_back(std::move(user));
}

}  // namespace detail

}  // namespace pgmux::config
