// Session parameters in transaction mode. Each client has the values it
// set (in its startup packet, with SET, or as the server reported them),
// kept as overrides of the pool's baseline: what a fresh server connection
// has. Each server has its own overrides: what earlier clients left there.
// Before a client's transaction runs on a server, pgmux sends the
// statements that turn the server's overrides into the client's, in the
// same write as the client's first message.
//
// Names are normalised: quotes dropped, lower case (GUC names are
// case-insensitive). A value is either a string (startup packet,
// ParameterStatus: applied with set_config) or SQL as the client wrote it
// after SET name TO (applied with SET, so lists keep their quoting).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pgmux::proxy {

struct ParamValue {
  std::string name;  // Normalised.
  std::string value;
  bool sql = false;  // `value` is SQL text (from SET), not a string.
};

class ParamOverrides {
 public:
  const ParamValue* find(std::string_view name) const;
  // find(normalise_param_name(name)), without building the normalised name.
  const ParamValue* find_unnormalised(std::string_view name) const;
  void set(std::string_view name, std::string_view value, bool sql);
  bool erase(std::string_view name);
  void clear() { items_.clear(); }
  // Drops the overrides whose names `keep` rejects.
  template <class Pred>
  void erase_if_not(Pred keep) {
    std::erase_if(items_, [&](const ParamValue& v) { return !keep(v.name); });
  }
  bool empty() const { return items_.empty(); }
  const std::vector<ParamValue>& items() const { return items_; }

 private:
  std::vector<ParamValue> items_;
};

// Lower case, surrounding double quotes removed. nullopt if the result is
// not a plain GUC name ([a-z0-9_.$], not empty), which pgmux will not track.
std::optional<std::string> normalise_param_name(std::string_view name);

// Appends `value` as a string literal that means the same whatever
// standard_conforming_strings is (E'...', quotes and backslashes doubled).
void append_sql_literal(std::string& sql, std::string_view value);

// Appends to `sql` the statements that turn a server whose session differs
// from the baseline by `server` into one that differs by `client`. Appends
// nothing when they agree.
void append_param_sync(std::string& sql, const ParamOverrides& client,
                       const ParamOverrides& server);

// The -c name=value and --name=value settings in a startup packet's
// `options` (backslash escapes a space). Other switches are returned in
// `ignored`.
struct StartupOptions {
  std::vector<std::pair<std::string, std::string>> settings;
  std::vector<std::string> ignored;
};
StartupOptions parse_startup_options(std::string_view options);

}  // namespace pgmux::proxy
