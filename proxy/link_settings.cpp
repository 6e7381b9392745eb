// Link: session parameters. The session sync at the start of a pairing,
// ParameterStatus from the server, SET and RESET of parameters the server
// does not report, and the read-back of settings after a transaction that
// may have undone some of them.
#include <spdlog/spdlog.h>

#include <optional>
#include <string>

#include "protocol/messages.h"
#include "proxy/link.h"
#include "proxy/pool.h"

namespace pgmux::proxy {

void Link::sync_session() {
  ParamOverrides& client = client_->overrides();
  ParamOverrides& server = server_.overrides();
  if (client.empty() && server.empty()) return;
  // The server may carry another client's settings, or lack this one's:
  // bring it in line ahead of the client's first message.
  std::string sql;
  append_param_sync(sql, client, server);
  if (sql.empty()) return;
  server = client;
  scratch_.clear();
  protocol::append_query(scratch_, sql);
  server_.stream().write_owned(scratch_);
  pending_.push(Pending::own_query());
}

void Link::note_untracked_set(std::string_view name, std::string_view value, bool reset,
                              bool exact) {
  untracked_sets_.push_back(
      ParamValue{std::string(name), reset ? std::string() : std::string(value), !reset});
  if (!exact) settings_unsure_ = true;
}

void Link::note_reset_all(bool exact) {
  // The read-back needs every name seen, in case a savepoint undoes the RESET.
  if (exact && !settings_unsure_) untracked_sets_.clear();
  untracked_reset_all_ = true;
  if (!exact) settings_unsure_ = true;
}

void Link::read_back_settings() {
  // The names to ask about: every one set or reset since the last settled
  // ReadyForQuery, and after RESET ALL every unreported one either side has.
  std::vector<std::string_view> names;
  auto add = [&](std::string_view name) {
    if (pool_.reports(name)) return;
    for (std::string_view seen : names) {
      if (seen == name) return;
    }
    names.push_back(name);
  };
  for (const ParamValue& set : untracked_sets_) add(set.name);
  if (untracked_reset_all_) {
    for (const ParamValue& item : server_.overrides().items()) add(item.name);
    if (client_ != nullptr) {
      for (const ParamValue& item : client_->overrides().items()) add(item.name);
    }
  }
  std::string sql;
  if (!names.empty()) {
    // One row per name: its value now (NULL if no such setting), and
    // whether that is what RESET would give (a placeholder that pg_settings
    // does not list is at its default when unset or empty).
    sql =
        "SELECT n, pg_catalog.current_setting(n, true), COALESCE((SELECT s.setting = s.reset_val "
        "FROM pg_catalog.pg_settings s WHERE pg_catalog.lower(s.name) = n), "
        "COALESCE(pg_catalog.current_setting(n, true), '') = '') FROM pg_catalog.unnest(ARRAY[";
    for (size_t i = 0; i < names.size(); ++i) {
      if (i > 0) sql += ", ";
      append_sql_literal(sql, names[i]);
    }
    sql += "]::text[]) AS n";
  }
  untracked_sets_.clear();
  untracked_reset_all_ = false;
  settings_unsure_ = false;
  if (sql.empty()) return;
  spdlog::debug("{}: reading back {} setting(s) after the transaction", server_.tag(),
                names.size());
  scratch_.clear();
  protocol::append_query(scratch_, sql);
  server_.stream().write_owned(scratch_);
  pending_.push(Pending::settings_query());
}

void Link::on_settings_row(protocol::ByteView message) {
  auto row = protocol::parse_data_row(message);
  if (!row || row->size() != 3 || !(*row)[0]) return;
  const std::optional<std::string> name = normalise_param_name(*(*row)[0]);
  if (!name) return;
  const std::optional<std::string_view> value = (*row)[1];
  const bool is_default = !value || ((*row)[2] && *(*row)[2] == "t");
  auto record = [&](ParamOverrides& to) {
    if (is_default) {
      to.erase(*name);
    } else {
      to.set(*name, *value, false);
    }
  };
  record(server_.overrides());
  if (client_ != nullptr) record(client_->overrides());
}

void Link::apply_untracked_sets() {
  if (error_since_ready_) {
    untracked_sets_.clear();
    untracked_reset_all_ = false;
    return;
  }
  auto apply = [&](ParamOverrides& to) {
    if (untracked_reset_all_) to.erase_if_not([&](std::string_view n) { return pool_.reports(n); });
    for (const ParamValue& set : untracked_sets_) {
      if (set.sql) {
        to.set(set.name, set.value, true);
      } else {
        to.erase(set.name);
      }
    }
  };
  if (untracked_reset_all_ || !untracked_sets_.empty()) {
    apply(server_.overrides());
    if (client_ != nullptr) apply(client_->overrides());
  }
  untracked_sets_.clear();
  untracked_reset_all_ = false;
}

void Link::on_parameter_status(protocol::ByteView message) {
  auto status = protocol::parse_parameter_status(message);
  if (!status) return;
  std::optional<std::string> name = normalise_param_name(status->name);
  if (!name || !pool_.reports(*name)) return;
  const std::string* baseline = pool_.baseline_value(*name);
  const bool is_default = baseline != nullptr && *baseline == status->value;
  // The change was made by (or for) the attached client: both sides agree.
  auto record = [&](ParamOverrides& to) {
    if (is_default) {
      to.erase(*name);
    } else {
      to.set(*name, status->value, false);
    }
  };
  record(server_.overrides());
  if (client_ != nullptr) record(client_->overrides());
}

}  // namespace pgmux::proxy
