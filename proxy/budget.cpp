#include "proxy/budget.h"

#include <charconv>

namespace pgmux::proxy {

namespace {

std::optional<int64_t> integer(const std::optional<std::string_view>& text) {
  if (!text || text->empty()) return std::nullopt;
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc() || end != text->data() + text->size()) return std::nullopt;
  return value;
}

}  // namespace

bool BudgetSurvey::full() const {
  return (role_limit >= 0 && role_connections >= role_limit) ||
         (max_connections > 0 && connections >= max_connections);
}

bool BudgetSurvey::contended(uint32_t mine) const {
  // A role's budget counts as full from 80 %: the instances sharing it
  // lower and raise their limits all the time, so it is seldom caught at
  // exactly 100 %.
  const bool role_full = role_limit >= 0 && role_connections * 5 >= role_limit * 4;
  const bool server_full = max_connections > 0 && connections >= max_connections;
  if (role_full && role_connections > mine) return true;
  return server_full && connections > mine;
}

int64_t BudgetSurvey::budget() const { return role_limit >= 0 ? role_limit : max_connections; }

std::optional<BudgetSurvey> parse_budget_survey(
    const std::vector<std::optional<std::string_view>>& row) {
  if (row.size() != 4) return std::nullopt;
  std::optional<int64_t> values[4];
  for (size_t i = 0; i < 4; ++i) {
    values[i] = integer(row[i]);
    if (!values[i]) return std::nullopt;
  }
  return BudgetSurvey{*values[0], *values[1], *values[2], *values[3]};
}

}  // namespace pgmux::proxy
