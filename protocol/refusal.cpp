#include "protocol/refusal.h"

#include <array>

#include "protocol/sqlstate.h"

namespace pgmux::protocol {

bool is_capacity_refusal(std::string_view code, std::string_view message) {
  if (code == sqlstate::kTooManyConnections || code == sqlstate::kCannotConnectNow) return true;
  if (code != sqlstate::kInternalError) return false;
  // Supavisor has changed its wording over time (see docs/ARCHITECTURE.md);
  // every variant seen so far carries one of these.
  static constexpr std::array<std::string_view, 6> kMarkers = {
      "MaxClientsInSessionMode",        "(EMAXCONNSESSION)",  "(EMAXCONN)",
      "Max client connections reached", "(ECHECKOUTTIMEOUT)", "(ECIRCUITBREAKER)"};
  for (std::string_view marker : kMarkers) {
    if (message.find(marker) != std::string_view::npos) return true;
  }
  return false;
}

}  // namespace pgmux::protocol
