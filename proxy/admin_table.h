// The admin console's table vocabulary, shared by admin_show.cpp and
// admin_config.cpp: a Table appends RowDescription, DataRows and, when it
// goes out of scope, CommandComplete "SHOW". Counts are int8, the rest
// text, as PgBouncer describes them.
#pragma once

#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "protocol/messages.h"
#include "protocol/result_set.h"

namespace pgmux::proxy::admin_table {

using Cell = std::optional<std::string>;

// One result set: the RowDescription, then rows, then CommandComplete.
class Table {
 public:
  Table(protocol::Bytes& out, const std::vector<protocol::ColumnDescription>& columns) : out_(out) {
    protocol::append_row_description(out_, columns);
  }
  Table(const Table&) = delete;
  Table& operator=(const Table&) = delete;
  ~Table() { protocol::append_command_complete(out_, "SHOW"); }

  void row(const std::vector<Cell>& cells) {
    views_.clear();
    for (const Cell& cell : cells) {
      views_.push_back(cell ? std::optional<std::string_view>(*cell) : std::nullopt);
    }
    protocol::append_data_row(out_, views_);
  }

 private:
  protocol::Bytes& out_;
  std::vector<std::optional<std::string_view>> views_;
};

inline protocol::ColumnDescription text(std::string_view name) {
  return {name, protocol::kTextOid};
}
inline protocol::ColumnDescription count(std::string_view name) {
  return {name, protocol::kInt8Oid};
}
inline Cell num(uint64_t value) { return std::to_string(value); }
inline Cell str(std::string_view value) { return std::string(value); }
inline Cell yes_no(bool value) { return std::string(value ? "yes" : "no"); }
inline Cell pointer(const void* p) {
  char text[24];
  std::snprintf(text, sizeof text, "%" PRIxPTR, reinterpret_cast<uintptr_t>(p));
  return std::string(text);
}

// SHOW CONFIG: every pgmux setting as key, value, default, changeable;
// never a password.
void append_config_table(const config::Config& config, protocol::Bytes& out);

}  // namespace pgmux::proxy::admin_table
