#include "proxy/session_params.h"

#include <algorithm>

namespace pgmux::proxy {
namespace {

bool same_name(std::string_view a, std::string_view b) { return a == b; }

// Whether normalise_param_name(raw) == normal, for a normalised `normal`:
// such a name holds only [a-z0-9_.$], so a character that normalising would
// reject never matches.
bool normalises_to(std::string_view raw, std::string_view normal) {
  if (raw.size() >= 2 && raw.front() == '"' && raw.back() == '"') {
    raw = raw.substr(1, raw.size() - 2);
  }
  if (raw.size() != normal.size()) return false;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != normal[i]) return false;
  }
  return true;
}

}  // namespace

void append_sql_literal(std::string& sql, std::string_view value) {
  sql += "E'";
  for (char c : value) {
    if (c == '\'' || c == '\\') sql += c;
    sql += c;
  }
  sql += '\'';
}

const ParamValue* ParamOverrides::find(std::string_view name) const {
  for (const ParamValue& item : items_) {
    if (same_name(item.name, name)) return &item;
  }
  return nullptr;
}

const ParamValue* ParamOverrides::find_unnormalised(std::string_view name) const {
  for (const ParamValue& item : items_) {
    if (normalises_to(name, item.name)) return &item;
  }
  return nullptr;
}

void ParamOverrides::set(std::string_view name, std::string_view value, bool sql) {
  for (ParamValue& item : items_) {
    if (same_name(item.name, name)) {
      item.value = std::string(value);
      item.sql = sql;
      return;
    }
  }
  items_.push_back(ParamValue{std::string(name), std::string(value), sql});
}

bool ParamOverrides::erase(std::string_view name) {
  return std::erase_if(items_, [&](const ParamValue& v) { return same_name(v.name, name); }) > 0;
}

std::optional<std::string> normalise_param_name(std::string_view name) {
  if (name.size() >= 2 && name.front() == '"' && name.back() == '"') {
    name = name.substr(1, name.size() - 2);
  }
  if (name.empty() || name.size() > 63 * 2 + 1) return std::nullopt;
  std::string out;
  out.reserve(name.size());
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '$';
    if (!ok) return std::nullopt;
    out += c;
  }
  return out;
}

void append_param_sync(std::string& sql, const ParamOverrides& client,
                       const ParamOverrides& server) {
  for (const ParamValue& want : client.items()) {
    const ParamValue* have = server.find(want.name);
    if (have != nullptr && have->value == want.value && have->sql == want.sql) continue;
    if (want.sql) {
      sql += "SET " + want.name + " TO " + want.value + ";";
    } else {
      sql += "SELECT pg_catalog.set_config(";
      append_sql_literal(sql, want.name);
      sql += ", ";
      append_sql_literal(sql, want.value);
      sql += ", false);";
    }
  }
  for (const ParamValue& have : server.items()) {
    if (client.find(have.name) == nullptr) sql += "RESET " + have.name + ";";
  }
}

StartupOptions parse_startup_options(std::string_view options) {
  // Split on unescaped whitespace, as PostgreSQL's pg_split_opts does.
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < options.size(); ++i) {
    const char c = options[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    in_word = true;
    if (c == '\\' && i + 1 < options.size()) {
      word += options[++i];
    } else {
      word += c;
    }
  }
  if (in_word) words.push_back(std::move(word));

  StartupOptions out;
  auto add_setting = [&](std::string_view setting) {
    const size_t eq = setting.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      out.ignored.emplace_back(setting);
      return;
    }
    std::string name(setting.substr(0, eq));
    std::replace(name.begin(), name.end(), '-', '_');
    out.settings.emplace_back(std::move(name), std::string(setting.substr(eq + 1)));
  };
  for (size_t i = 0; i < words.size(); ++i) {
    std::string_view w = words[i];
    if (w == "-c" && i + 1 < words.size()) {
      add_setting(words[++i]);
    } else if (w.starts_with("-c")) {
      add_setting(w.substr(2));
    } else if (w.starts_with("--")) {
      add_setting(w.substr(2));
    } else {
      out.ignored.emplace_back(w);
    }
  }
  return out;
}

}  // namespace pgmux::proxy
