#include "bench/options.h"

#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <utility>

namespace pgmux::bench {
namespace {

constexpr std::array<std::pair<std::string_view, ScenarioKind>, 7> kScenarios{{
    {"select", ScenarioKind::kSelect},
    {"tpcb", ScenarioKind::kTpcb},
    {"hold", ScenarioKind::kHold},
    {"prepared", ScenarioKind::kPrepared},
    {"churn", ScenarioKind::kChurn},
    {"idle", ScenarioKind::kIdle},
    {"file", ScenarioKind::kFile},
}};

template <typename T>
std::optional<T> parse_number(std::string_view text) {
  T value{};
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty()) return std::nullopt;
  return value;
}

std::vector<std::string> split_commas(std::string_view text) {
  std::vector<std::string> parts;
  while (!text.empty()) {
    const size_t comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    if (!part.empty()) parts.emplace_back(part);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return parts;
}

}  // namespace

std::string_view scenario_name(ScenarioKind kind) {
  for (const auto& [name, value] : kScenarios) {
    if (value == kind) return name;
  }
  return "?";
}

ParsedOptions parse_options(int argc, const char* const* argv, const char* env_url) {
  ParsedOptions out;
  Options& o = out.options;
  if (env_url != nullptr) o.url = env_url;
  bool scenario_given = false;

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (arg.starts_with("--")) {
      const size_t eq = arg.find('=');
      if (eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
      }
    }
    // Takes the option's value: inline after '=' or the next argument.
    auto value = [&]() -> std::optional<std::string_view> {
      if (inline_value) return inline_value;
      if (i + 1 >= argc) return std::nullopt;
      return std::string_view(argv[++i]);
    };
    auto fail = [&](const std::string& why) {
      out.error = std::string(name) + ": " + why;
      return out;
    };
    // Flags first: they take no value.
    if (name == "-h" || name == "--help") {
      o.help = true;
      continue;
    }
    if (name == "--json" || name == "--quiet" || name == "-q" || name == "--init") {
      if (inline_value) return fail("takes no value");
      if (name == "--json") o.json = true;
      if (name == "--quiet" || name == "-q") o.quiet = true;
      if (name == "--init") o.init = true;
      continue;
    }
    const bool known =
        name == "--url" || name == "--hosts" || name == "-s" || name == "--scenario" ||
        name == "--file" || name == "-f" || name == "-c" || name == "--clients" || name == "-T" ||
        name == "--duration" || name == "-t" || name == "--transactions" || name == "--rate" ||
        name == "-R" || name == "--scale" || name == "--protocol" || name == "-M" ||
        name == "--plot" || name == "--progress" || name == "-P" ||
        name == "--connect-concurrency" || name == "--connect-timeout" || name == "--hold-ms";
    if (!known) {
      out.error = "unknown option " + std::string(arg) + " (see --help)";
      return out;
    }
    const std::optional<std::string_view> v = value();
    if (!v) return fail("needs a value");
    if (name == "--url") {
      o.url = *v;
    } else if (name == "--hosts") {
      o.hosts = split_commas(*v);
      if (o.hosts.empty()) return fail("needs at least one host");
    } else if (name == "-s" || name == "--scenario") {
      bool found = false;
      for (const auto& [scenario, kind] : kScenarios) {
        if (scenario == *v) {
          o.scenario = kind;
          found = true;
        }
      }
      if (!found) return fail("unknown scenario '" + std::string(*v) + "'");
      scenario_given = true;
    } else if (name == "--file" || name == "-f") {
      o.file = *v;
    } else if (name == "-c" || name == "--clients") {
      auto n = parse_number<int>(*v);
      if (!n || *n < 1) return fail("needs a whole number >= 1");
      o.clients = *n;
    } else if (name == "-T" || name == "--duration") {
      auto n = parse_number<double>(*v);
      if (!n || !(*n > 0) || !std::isfinite(*n)) return fail("needs a number of seconds > 0");
      o.duration_s = *n;
    } else if (name == "-t" || name == "--transactions") {
      auto n = parse_number<uint64_t>(*v);
      if (!n || *n < 1) return fail("needs a whole number >= 1");
      o.transactions = *n;
    } else if (name == "-R" || name == "--rate") {
      auto n = parse_number<double>(*v);
      if (!n || !(*n > 0) || !std::isfinite(*n)) return fail("needs a rate > 0");
      o.rate = *n;
    } else if (name == "--scale") {
      auto n = parse_number<int>(*v);
      if (!n || *n < 1) return fail("needs a whole number >= 1");
      o.scale = *n;
    } else if (name == "-M" || name == "--protocol") {
      if (*v == "simple") {
        o.protocol = Protocol::kSimple;
      } else if (*v == "extended") {
        o.protocol = Protocol::kExtended;
      } else {
        return fail("must be simple or extended");
      }
    } else if (name == "--plot") {
      o.plot = *v;
    } else if (name == "-P" || name == "--progress") {
      auto n = parse_number<double>(*v);
      if (!n || !(*n >= 0.1) || !std::isfinite(*n)) return fail("needs a number of seconds >= 0.1");
      o.progress_s = *n;
    } else if (name == "--connect-concurrency") {
      auto n = parse_number<int>(*v);
      if (!n || *n < 1) return fail("needs a whole number >= 1");
      o.connect_concurrency = *n;
    } else if (name == "--connect-timeout") {
      auto n = parse_number<double>(*v);
      if (!n || !(*n > 0) || !std::isfinite(*n)) return fail("needs a number of seconds > 0");
      o.connect_timeout_s = *n;
    } else if (name == "--hold-ms") {
      auto n = parse_number<int>(*v);
      if (!n || *n < 0) return fail("needs a whole number >= 0");
      o.hold_ms = *n;
    }
  }

  if (o.help) return out;
  if (!o.file.empty()) {
    if (scenario_given && o.scenario != ScenarioKind::kFile) {
      out.error =
          "--file and --scenario " + std::string(scenario_name(o.scenario)) + " cannot be combined";
      return out;
    }
    o.scenario = ScenarioKind::kFile;
  } else if (o.scenario == ScenarioKind::kFile) {
    out.error = "the file scenario needs --file PATH";
    return out;
  }
  if (o.url.empty()) out.error = "no target: give --url or set DATABASE_URL";
  return out;
}

std::string help_text() {
  return R"(usage: pgmux-bench [options]

Load-tests a PostgreSQL server or a pooler in front of one (pgmux, PgBouncer)
with thousands of client connections on one event loop.

Target:
  --url URL                  postgresql:// URL or key=value conninfo
                             (default: $DATABASE_URL)
  --hosts a,b,c              give connection i the host hosts[i % n] instead of
                             the URL's (e.g. 127.0.0.1,127.0.0.2 to spread many
                             connections over more ephemeral port ranges)

Workload:
  -s, --scenario NAME        select    pgbench -S: SELECT abalance FROM
                                       pgbench_accounts WHERE aid = random (default)
                             tpcb      pgbench's TPC-B-like read-write transaction
                             hold      BEGIN; SELECT pg_sleep(hold_ms/1000.0); COMMIT
                             prepared  the select, as a named prepared statement
                                       (PQsendPrepare once per connection)
                             churn     connect, SELECT 1, disconnect: one transaction
                             idle      open the connections and hold them idle
  -f, --file PATH            custom SQL: one transaction is the whole file sent as
                             one simple query
  -c, --clients N            client connections (default 10)
  -T, --duration SECS        measure for SECS seconds after the connections are
                             up (default 10)
  -t, --transactions N       stop after N transactions in total instead
  -R, --rate TPS             open loop at TPS transactions per second in total;
                             latency counts from each transaction's scheduled
                             start (default: closed loop, every client sends its
                             next transaction as soon as the last one finished)
  --scale N                  pgbench scale factor: aid in 1..100000*N (default:
                             SELECT count(*) FROM pgbench_branches)
  -M, --protocol P           simple (PQsendQuery, literal values) or extended
                             (PQsendQueryParams) for select and tpcb (default simple)
  --hold-ms MS               how long each hold transaction sleeps (default 50)
  --init                     create and fill the pgbench tables at --scale
                             (default 1) like `pgbench -i -I dtGvp`, then exit

Connections:
  --connect-concurrency N    at most N handshakes in flight (default 64)
  --connect-timeout SECS     give up on a handshake after SECS (default 10); a
                             failed client retries after a short backoff

Output:
  --json                     print one JSON object on stdout and nothing else
  --plot PATH                write an SVG: throughput and p99 over time and the
                             latency distribution
  -P, --progress SECS        progress interval: the live line on stderr (only
                             when stderr is a terminal) and the timeline buckets
                             (default 1)
  -q, --quiet                no progress line
  -h, --help                 this text

The tables come from `pgbench -i -s N URL` (or --init). Errors are counted per
SQLSTATE and message; capacity errors (53300, "too many clients", "remaining
connection slots", MaxClientsInSessionMode) are also counted on their own.
Exit status: 0 when the run completed (even with errors), 2 on bad options,
1 when the run could not start.
)";
}

}  // namespace pgmux::bench
