// load(): defaults, then the TOML file, DATABASE_URL, the PGMUX_* overrides
// and the auth_file, in that order, then validation.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "config/config.h"
#include "config/scalar_keys.h"

namespace pgmux::config {

using protocol::Ok;
using protocol::Status;

Getenv process_getenv() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

namespace {

Result<std::string> read_config_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return detail::config_error("cannot read config file '" + path + "': " + std::strerror(errno) +
                                "; check the path given to pgmux");
  }
  std::ostringstream content;
  content << in.rdbuf();
  if (in.bad()) return detail::config_error("cannot read config file '" + path + "'");
  return content.str();
}

// Reads config.auth_file, if set, and appends its users. A [users.NAME]
// table wins over an auth_file line for the same user. Only the TOML names
// are checked, so a name listed twice in the file is left for validate().
Status merge_auth_file(Config& config) {
  if (config.auth_file.empty()) return Ok{};
  std::ifstream in(config.auth_file, std::ios::binary);
  if (!in) {
    return detail::config_error("cannot read auth_file '" + config.auth_file +
                                "': " + std::strerror(errno) +
                                "; check the path and that pgmux may read it");
  }
  std::ostringstream content;
  content << in.rdbuf();
  Result<std::vector<User>> listed = parse_userlist(content.str(), config.auth_file);
  if (!listed) return listed.error();
  const auto from_toml = static_cast<std::ptrdiff_t>(config.users.size());
  for (User& user : *listed) {
    bool in_toml = std::any_of(config.users.begin(), config.users.begin() + from_toml,
                               [&](const User& u) { return u.name == user.name; });
    if (!in_toml) config.users.push_back(std::move(user));
  }
  return Ok{};
}

// Warnings that need the final configuration (after the environment).
// password_file warnings were added while reading the TOML.
void add_secret_warnings(Config& config) {
  if (!config.auth_file.empty()) detail::warn_if_not_private(config.auth_file, config.warnings);
  detail::warn_if_not_private(config.client_tls_key_file, config.warnings);
}

}  // namespace

Result<Config> load(const LoadOptions& options) {
  const Getenv getenv = options.getenv ? options.getenv : process_getenv();
  Config config;

  if (options.config_path) {
    Result<std::string> text = read_config_file(*options.config_path);
    if (!text) return text.error();
    Result<Config> parsed = parse_toml(*text, *options.config_path, std::move(config));
    if (!parsed) return parsed.error();
    config = std::move(*parsed);
  }

  // An empty variable counts as unset: container tooling often exports "".
  if (std::optional<std::string> url = getenv("DATABASE_URL"); url && !url->empty()) {
    detail::ScalarInput input{std::nullopt,   std::move(url), true,
                              "DATABASE_URL", std::nullopt,   std::nullopt};
    Status status = apply_scalar(config, *detail::find_scalar_key("database_url"), input);
    if (!status) return status.error();
  }

  for (const detail::KeySpec& key : detail::kScalarKeys) {
    std::string name = detail::env_name(key.name);
    std::optional<std::string> value = getenv(name);
    if (!value || value->empty()) continue;
    detail::ScalarInput input{std::nullopt, std::move(value), true,
                              name,         std::nullopt,     std::nullopt};
    Status status = apply_scalar(config, key, input);
    if (!status) return status.error();
  }

  Status users = merge_auth_file(config);
  if (!users) return users.error();
  add_secret_warnings(config);

  Status valid = validate(config);
  if (!valid) return valid.error();
  return config;
}

}  // namespace pgmux::config
