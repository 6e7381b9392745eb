// pgmux-bench's command line: parsed into a plain struct, without I/O, so
// the tests can feed it argument vectors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pgmux::bench {

enum class ScenarioKind { kSelect, kTpcb, kHold, kPrepared, kChurn, kIdle, kFile };
enum class Protocol { kSimple, kExtended };

std::string_view scenario_name(ScenarioKind kind);

struct Options {
  std::string url;                 // postgresql:// URL or key=value conninfo.
  std::vector<std::string> hosts;  // Empty: the URL's own host.
  ScenarioKind scenario = ScenarioKind::kSelect;
  std::string file;  // SQL file for ScenarioKind::kFile.
  int clients = 10;
  double duration_s = 10;
  uint64_t transactions = 0;  // 0: run for duration_s instead.
  double rate = 0;            // Total transactions per second; 0: closed loop.
  int scale = 0;              // 0: count pgbench_branches.
  bool init = false;
  Protocol protocol = Protocol::kSimple;
  bool json = false;
  std::string plot;  // SVG output path; empty: no plot.
  double progress_s = 1;
  bool quiet = false;
  int connect_concurrency = 64;
  double connect_timeout_s = 10;
  int hold_ms = 50;
  bool help = false;
};

struct ParsedOptions {
  Options options;
  std::string error;  // Empty on success.
};

// Parses argv[1..argc). `env_url` is DATABASE_URL (may be null), the default
// for --url. Accepts "--name value" and "--name=value".
ParsedOptions parse_options(int argc, const char* const* argv, const char* env_url);

// The --help text: every option, its default and what it does.
std::string help_text();

}  // namespace pgmux::bench
