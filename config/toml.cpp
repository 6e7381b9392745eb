// parse_toml: the only file that sees toml++. toml++ reports syntax errors by
// throwing toml::parse_error; they are caught here and turned into an Error
// with file:line:column, so no exception leaves config/.
#include <toml++/toml.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include "config/config.h"
#include "config/scalar_keys.h"

namespace pgmux::config {
namespace {

using detail::config_error;
using protocol::Ok;
using protocol::Status;

constexpr std::array<std::string_view, 3> kDatabaseKeys = {"url", "password", "password_file"};
constexpr std::array<std::string_view, 3> kUserKeys = {"password", "password_file",
                                                       "allowed_cidrs"};

std::string location(std::string_view origin, const toml::source_region& source) {
  return std::string(origin) + ":" + std::to_string(source.begin.line) + ":" +
         std::to_string(source.begin.column);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// "unknown key 'x' in pgmux.toml:3:1; did you mean y? Valid keys: a, b, c".
template <class Names>
protocol::Error unknown_key(std::string_view key, std::string_view where, const Names& valid) {
  std::string_view best;
  size_t best_distance = std::string_view::npos;
  std::string list;
  for (std::string_view name : valid) {
    size_t d = edit_distance(key, name);
    if (d < best_distance) {
      best_distance = d;
      best = name;
    }
    list += (list.empty() ? "" : ", ") + std::string(name);
  }
  std::string message = "unknown key '" + std::string(key) + "' in " + std::string(where);
  // Suggest only a plausible typo, not any key at all.
  if (best_distance * 2 < std::max(key.size(), best.size())) {
    message += "; did you mean " + std::string(best) + "?";
  } else {
    message += ".";
  }
  return config_error(message + " Valid keys: " + list);
}

std::vector<std::string_view> scalar_and_table_names() {
  std::vector<std::string_view> names;
  names.reserve(detail::kScalarKeys.size() + 2);
  for (const detail::KeySpec& key : detail::kScalarKeys) names.push_back(key.name);
  names.emplace_back("databases");
  names.emplace_back("users");
  return names;
}

// The elements of a TOML array of strings, or nullopt if `node` is not one.
std::optional<std::vector<std::string>> string_array(const toml::node& node) {
  const toml::array* array = node.as_array();
  if (array == nullptr) return std::nullopt;
  std::vector<std::string> items;
  for (const toml::node& element : *array) {
    const auto* s = element.as_string();
    if (s == nullptr) return std::nullopt;
    items.push_back(s->get());
  }
  return items;
}

// The secret from password or password_file, never repeated in a message.
// REQUIRES: at least one of them is set. Both set is an error.
Result<std::string> secret_of(const toml::node* password, const toml::node* password_file,
                              std::string_view table, std::string_view where,
                              std::string_view origin, std::vector<std::string>& warnings) {
  auto string_of = [&](const toml::node* value, std::string_view key) -> Result<std::string> {
    if (const auto* s = value->as_string()) return s->get();
    return config_error(location(origin, value->source()) + ": " + std::string(table) + " " +
                        std::string(key) + " must be a string");
  };
  if (password != nullptr && password_file != nullptr) {
    return config_error(std::string(where) +
                        " sets both password and password_file; keep only one");
  }
  if (password != nullptr) return string_of(password, "password");
  Result<std::string> path = string_of(password_file, "password_file");
  if (!path) return path.error();
  Result<std::string> text = detail::read_password_file(*path, std::string(where));
  if (text) detail::warn_if_not_private(*path, warnings);
  return text;
}

// A key of the top level written under a [table] header: a classic TOML slip.
protocol::Error misplaced_key(const toml::key& key, std::string_view table,
                              std::string_view origin) {
  return config_error("key '" + std::string(key.str()) + "' at " + location(origin, key.source()) +
                      " is inside " + std::string(table) +
                      "; move top-level keys above the first [databases.NAME] or [users.NAME] "
                      "table");
}

Result<User> parse_user(std::string_view name, const toml::node& node, std::string_view origin,
                        std::vector<std::string>& warnings) {
  const std::string table = "[users." + std::string(name) + "]";
  const toml::table* fields = node.as_table();
  if (fields == nullptr) {
    return config_error(location(origin, node.source()) + ": users." + std::string(name) +
                        " must be a table: write " + table + " with password = \"...\"");
  }
  const toml::node* password = nullptr;
  const toml::node* password_file = nullptr;
  User user;
  user.name = std::string(name);
  for (auto&& [key, value] : *fields) {
    if (key.str() == "password") {
      password = &value;
    } else if (key.str() == "password_file") {
      password_file = &value;
    } else if (key.str() == "allowed_cidrs") {
      const std::string where = location(origin, value.source()) + ": " + table + " allowed_cidrs";
      std::optional<std::vector<std::string>> items = string_array(value);
      if (!items) {
        return config_error(where + " must be an array of strings, e.g. [\"10.0.0.0/8\"]");
      }
      for (const std::string& item : *items) {
        Result<Cidr> range = parse_cidr(item);
        if (!range) return config_error(where + ": " + range.error().message);
        user.allowed_cidrs.push_back(std::move(*range));
      }
    } else if (detail::find_scalar_key(key.str()) != nullptr) {
      return misplaced_key(key, table, origin);
    } else {
      return unknown_key(key.str(), table + " at " + location(origin, key.source()), kUserKeys);
    }
  }
  const std::string where = location(origin, node.source()) + ": " + table;
  if (password == nullptr && password_file == nullptr) {
    return config_error(where +
                        " has no password; add password = \"...\" (plain, md5... or "
                        "SCRAM-SHA-256$...) or password_file = \"/path\"");
  }
  Result<std::string> secret = secret_of(password, password_file, table, where, origin, warnings);
  if (!secret) return secret.error();
  user.password = std::move(*secret);
  return user;
}

Result<Database> parse_database(std::string_view name, const toml::node& node,
                                std::string_view origin, std::vector<std::string>& warnings) {
  const std::string table = "[databases." + std::string(name) + "]";
  const toml::table* fields = node.as_table();
  if (fields == nullptr) {
    return config_error(location(origin, node.source()) + ": databases." + std::string(name) +
                        " must be a table: write " + table + " with url = \"postgresql://...\"");
  }
  const toml::node* url = nullptr;
  const toml::node* password = nullptr;
  const toml::node* password_file = nullptr;
  for (auto&& [key, value] : *fields) {
    if (key.str() == "url") {
      url = &value;
    } else if (key.str() == "password") {
      password = &value;
    } else if (key.str() == "password_file") {
      password_file = &value;
    } else if (detail::find_scalar_key(key.str()) != nullptr) {
      return misplaced_key(key, table, origin);
    } else {
      return unknown_key(key.str(), table + " at " + location(origin, key.source()), kDatabaseKeys);
    }
  }
  const std::string where = location(origin, node.source()) + ": " + table;
  if (url == nullptr) {
    return config_error(where + " has no url; add url = \"postgresql://user@host:5432/dbname\"");
  }
  // No message below repeats a value: url and password may hold secrets.
  auto string_of = [&](const toml::node* value, std::string_view key) -> Result<std::string> {
    if (const auto* s = value->as_string()) return s->get();
    return config_error(location(origin, value->source()) + ": " + table + " " + std::string(key) +
                        " must be a string");
  };
  Result<std::string> url_text = string_of(url, "url");
  if (!url_text) return url_text.error();
  Result<Upstream> upstream = parse_database_url(*url_text);
  if (!upstream) {
    return config_error(location(origin, url->source()) + ": " + table +
                        " url: " + upstream.error().message);
  }
  if (password != nullptr || password_file != nullptr) {
    Result<std::string> secret = secret_of(password, password_file, table, where, origin, warnings);
    if (!secret) return secret.error();
    upstream->password = std::move(*secret);
  }
  return Database{std::string(name), std::move(*upstream)};
}

Status apply_root(const toml::table& root, std::string_view origin, Config& config) {
  const toml::node* database_url = nullptr;
  for (auto&& [key, value] : root) {
    if (key.str() == "databases") {
      const toml::table* databases = value.as_table();
      if (databases == nullptr) {
        return config_error(location(origin, value.source()) +
                            ": databases must be a table of [databases.NAME] tables");
      }
      for (auto&& [name, fields] : *databases) {
        Result<Database> database = parse_database(name.str(), fields, origin, config.warnings);
        if (!database) return database.error();
        detail::put_database(config, std::move(*database));
      }
      continue;
    }
    if (key.str() == "users") {
      const toml::table* users = value.as_table();
      if (users == nullptr) {
        return config_error(location(origin, value.source()) +
                            ": users must be a table of [users.NAME] tables");
      }
      for (auto&& [name, fields] : *users) {
        Result<User> user = parse_user(name.str(), fields, origin, config.warnings);
        if (!user) return user.error();
        detail::put_user(config, std::move(*user));
      }
      continue;
    }
    const detail::KeySpec* spec = detail::find_scalar_key(key.str());
    if (spec == nullptr) {
      return unknown_key(key.str(), location(origin, key.source()), scalar_and_table_names());
    }
    if (spec->kind == detail::KeyKind::kDatabaseUrl) {
      database_url = &value;  // Applied last: it replaces a same-named [databases] entry.
      continue;
    }
    detail::ScalarInput input;
    if (const auto* i = value.as_integer()) input.integer = i->get();
    if (const auto* s = value.as_string()) input.text = s->get();
    if (const auto* b = value.as_boolean()) input.boolean = b->get();
    input.list = string_array(value);
    input.where = location(origin, value.source()) + ": " + std::string(key.str());
    Status status = detail::apply_scalar(config, *spec, input);
    if (!status) return status;
  }
  if (database_url != nullptr) {
    detail::ScalarInput input;
    if (const auto* s = database_url->as_string()) input.text = s->get();
    input.where = location(origin, database_url->source()) + ": database_url";
    return detail::apply_scalar(config, *detail::find_scalar_key("database_url"), input);
  }
  return Ok{};
}

}  // namespace

namespace detail {

Status check_toml_characters(std::string_view text, std::string_view origin) {
  enum class State { kCode, kComment, kBasic, kLiteral, kMultiBasic, kMultiLiteral };
  State state = State::kCode;
  size_t line = 1;
  size_t line_start = 0;
  auto at = [&](size_t i) -> char { return i < text.size() ? text[i] : '\0'; };
  auto non_ascii = [](char c) { return static_cast<unsigned char>(c) >= 0x80; };
  auto refuse = [&](size_t i, std::string_view why) {
    return config_error(std::string(origin) + ":" + std::to_string(line) + ":" +
                        std::to_string(i - line_start + 1) + ": " + std::string(why));
  };
  // The last character seen in code (outside strings and comments); a
  // string may start only after a delimiter. Elsewhere (`0\"...`, `x"...`)
  // toml++ goes on reading a bare value into what this scan would take for
  // a string, and meets its non-ASCII characters outside one.
  char prev = '\n';
  auto opens_value = [](char p) {
    return p == '\n' || p == ' ' || p == '\t' || p == '\r' || p == '=' || p == '[' || p == '{' ||
           p == ',' || p == '.';
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n') {
      ++line;
      line_start = i + 1;
      if (state != State::kMultiBasic && state != State::kMultiLiteral) state = State::kCode;
      prev = '\n';
      continue;
    }
    switch (state) {
      case State::kCode:
        if (c == '#') {
          state = State::kComment;
        } else if ((c == '"' || c == '\'') && !opens_value(prev)) {
          return refuse(i,
                        "a quote in the middle of a bare word; a TOML string starts after "
                        "'=', '[', '{', ',', '.' or a space");
        } else if (c == '"' || c == '\'') {
          const bool multi = at(i + 1) == c && at(i + 2) == c;
          if (multi) i += 2;
          state = c == '"' ? (multi ? State::kMultiBasic : State::kBasic)
                           : (multi ? State::kMultiLiteral : State::kLiteral);
        } else if (non_ascii(c)) {
          return refuse(i,
                        "a non-ASCII character outside a string or comment; TOML allows them "
                        "only inside quotes");
        }
        prev = c;
        break;
      case State::kComment:
        break;
      case State::kBasic:
      case State::kMultiBasic: {
        const bool multi = state == State::kMultiBasic;
        if (c == '"' && (!multi || (at(i + 1) == '"' && at(i + 2) == '"'))) {
          // Up to two more quotes before the closing three belong to the string.
          if (multi) {
            i += 2;
            while (at(i + 1) == '"') ++i;
          }
          state = State::kCode;
        } else if (c == '\\') {
          size_t next = i + 1;
          // A line-ending backslash swallows whitespace and newlines.
          if (multi) {
            while (next < text.size() && (text[next] == ' ' || text[next] == '\t' ||
                                          text[next] == '\r' || text[next] == '\n')) {
              if (text[next] == '\n') {
                ++line;
                line_start = next + 1;
              }
              ++next;
            }
          }
          if (non_ascii(at(next))) {
            return refuse(next,
                          "a non-ASCII character right after a backslash in a string; write "
                          "it as \\uXXXX or move it off the continued line");
          }
          // Skip the escaped character, or go on after the swallowed whitespace.
          i = (next == i + 1 && at(next) != '\n') ? next : next - 1;
        }
        break;
      }
      case State::kLiteral:
        if (c == '\'') state = State::kCode;
        break;
      case State::kMultiLiteral:
        if (c == '\'' && at(i + 1) == '\'' && at(i + 2) == '\'') {
          i += 2;
          while (at(i + 1) == '\'') ++i;
          state = State::kCode;
        }
        break;
    }
  }
  return Ok{};
}

}  // namespace detail

Result<Config> parse_toml(std::string_view text, std::string_view origin, Config base) {
  Status characters = detail::check_toml_characters(text, origin);
  if (!characters) return characters.error();
  try {
    toml::table root = toml::parse(text, origin);
    Status status = apply_root(root, origin, base);
    if (!status) return status.error();
    return base;
  } catch (const toml::parse_error& e) {
    return config_error(location(origin, e.source()) + ": " + std::string(e.description()));
  } catch (const std::exception& e) {
    return config_error(std::string(origin) + ": cannot load: " + e.what());
  }
}

}  // namespace pgmux::config
