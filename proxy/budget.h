// Sharing an upstream's connection budget with other clients of it (other
// pgmux sidecars, other apps): what the budget survey asks the upstream and
// what its answer means. Pure; the Upstream and Pool act on it.
//
// The survey is one query on an idle server. It reads how many connections
// the login role and the whole server hold, and their limits (the role's
// CONNECTION LIMIT, max_connections less the superuser reserve). A budget
// that is full while someone other than this pgmux holds part of it is
// contended: another instance may be waiting for the idle servers this one
// keeps, and it cannot say so (it has no connection to say it with).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace pgmux::proxy {

// Four integer columns: the role's connections, its CONNECTION LIMIT (-1:
// none), client backends, and the connections a non-superuser may hold.
inline constexpr std::string_view kBudgetSurveySql =
    "SELECT (SELECT count(*) FROM pg_stat_activity WHERE usename = session_user), "
    "(SELECT rolconnlimit FROM pg_roles WHERE rolname = session_user), "
    "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'), "
    "current_setting('max_connections')::int - "
    "current_setting('superuser_reserved_connections')::int";

struct BudgetSurvey {
  int64_t role_connections = 0;
  int64_t role_limit = -1;  // -1: the role has no CONNECTION LIMIT.
  int64_t connections = 0;
  int64_t max_connections = 0;

  // No connection left for this role (its limit, or the server's).
  bool full() const;
  // Whether the budget is full (for a role's limit: 80 % full) and someone
  // else holds part of it, given `mine`, the servers this pgmux has logged
  // in on the upstream.
  bool contended(uint32_t mine) const;
  // The connections the role may hold: its limit, or the server's.
  int64_t budget() const;
};

// The survey's DataRow, or nullopt when it is not four integers.
std::optional<BudgetSurvey> parse_budget_survey(
    const std::vector<std::optional<std::string_view>>& row);

}  // namespace pgmux::proxy
