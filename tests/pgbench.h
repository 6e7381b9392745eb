// Runs Debian's pgbench (PostgreSQL 15) in tests and checks its report.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "tests/pg_fixture.h"

namespace pgmux::testing {

inline constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin/";

// Runs `pgbench args` and checks it processed transactions with no failure
// and no error line. Returns its output.
inline std::string run_pgbench(const std::string& args) {
  CommandResult r = run_command(std::string(kPgBin) + "pgbench " + args);
  INFO("pgbench " << args << "\n" << r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("number of failed transactions: 0 ") != std::string::npos);
  CHECK(r.output.find("error") == std::string::npos);
  CHECK(r.output.find("number of transactions actually processed: 0") == std::string::npos);
  return r.output;
}

}  // namespace pgmux::testing
