// Classifies an upstream's login refusal: "no room for another connection
// right now" (worth retrying with backoff, never shown to clients) versus a
// real rejection (wrong password, no such database).
#pragma once

#include <string_view>

namespace pgmux::protocol {

// True for PostgreSQL's 53300 ("sorry, too many clients already", "remaining
// connection slots are reserved..."), 57P03 (starting up or shutting down),
// and Supabase's Supavisor refusals, which arrive as FATAL XX000 with one of
// these markers in the message: MaxClientsInSessionMode, (EMAXCONNSESSION),
// (EMAXCONN), "Max client connections reached", (ECHECKOUTTIMEOUT),
// (ECIRCUITBREAKER).
bool is_capacity_refusal(std::string_view code, std::string_view message);

}  // namespace pgmux::protocol
