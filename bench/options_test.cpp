#include "bench/options.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace pgmux::bench {
namespace {

ParsedOptions parse(std::vector<const char*> args, const char* env = "postgresql://x@h/db") {
  args.insert(args.begin(), "pgmux-bench");
  return parse_options(static_cast<int>(args.size()), args.data(), env);
}

}  // namespace

TEST_CASE("options: defaults") {
  const ParsedOptions p = parse({});
  REQUIRE(p.error.empty());
  const Options& o = p.options;
  CHECK(o.url == "postgresql://x@h/db");
  CHECK(o.scenario == ScenarioKind::kSelect);
  CHECK(o.clients == 10);
  CHECK(o.duration_s == 10);
  CHECK(o.transactions == 0);
  CHECK(o.rate == 0);
  CHECK(o.scale == 0);
  CHECK(o.protocol == Protocol::kSimple);
  CHECK(o.connect_concurrency == 64);
  CHECK(o.hold_ms == 50);
  CHECK(o.progress_s == 1);
  CHECK_FALSE(o.json);
  CHECK_FALSE(o.quiet);
}

TEST_CASE("options: every option, both spellings") {
  const ParsedOptions p = parse({"--url",
                                 "host=a dbname=b",
                                 "--hosts=127.0.0.1,127.0.0.2",
                                 "-s",
                                 "tpcb",
                                 "-c",
                                 "5000",
                                 "--duration=2.5",
                                 "--rate",
                                 "100",
                                 "--scale",
                                 "3",
                                 "--protocol",
                                 "extended",
                                 "--json",
                                 "--plot",
                                 "x.svg",
                                 "--progress",
                                 "0.5",
                                 "--quiet",
                                 "--connect-concurrency=8",
                                 "--hold-ms",
                                 "20",
                                 "--connect-timeout",
                                 "3"});
  REQUIRE(p.error.empty());
  const Options& o = p.options;
  CHECK(o.url == "host=a dbname=b");
  CHECK(o.hosts == std::vector<std::string>{"127.0.0.1", "127.0.0.2"});
  CHECK(o.scenario == ScenarioKind::kTpcb);
  CHECK(o.clients == 5000);
  CHECK(o.duration_s == 2.5);
  CHECK(o.rate == 100);
  CHECK(o.scale == 3);
  CHECK(o.protocol == Protocol::kExtended);
  CHECK(o.json);
  CHECK(o.plot == "x.svg");
  CHECK(o.progress_s == 0.5);
  CHECK(o.quiet);
  CHECK(o.connect_concurrency == 8);
  CHECK(o.hold_ms == 20);
  CHECK(o.connect_timeout_s == 3);
}

TEST_CASE("options: every scenario by name, --file implies the file scenario") {
  for (const char* name : {"select", "tpcb", "hold", "prepared", "churn", "idle"}) {
    const ParsedOptions p = parse({"--scenario", name});
    REQUIRE(p.error.empty());
    CHECK(scenario_name(p.options.scenario) == name);
  }
  const ParsedOptions f = parse({"--file", "q.sql", "-t", "100"});
  REQUIRE(f.error.empty());
  CHECK(f.options.scenario == ScenarioKind::kFile);
  CHECK(f.options.file == "q.sql");
  CHECK(f.options.transactions == 100);
}

TEST_CASE("options: errors name the option") {
  CHECK(parse({"--clients", "0"}).error.find("--clients") == 0);
  CHECK(parse({"-c", "many"}).error.find("-c") == 0);
  CHECK(parse({"--scenario", "nope"}).error.find("unknown scenario") != std::string::npos);
  CHECK(parse({"--protocol", "binary"}).error.find("simple or extended") != std::string::npos);
  CHECK(parse({"--duration"}).error.find("needs a value") != std::string::npos);
  CHECK(parse({"--bogus"}).error.find("unknown option --bogus") == 0);
  CHECK(parse({"--json=1"}).error.find("takes no value") != std::string::npos);
  CHECK(parse({"-s", "file"}).error.find("--file") != std::string::npos);
  CHECK(parse({"-s", "tpcb", "--file", "x.sql"}).error.find("cannot be combined") !=
        std::string::npos);
  CHECK(parse({}, nullptr).error.find("DATABASE_URL") != std::string::npos);
  CHECK(parse({"--help"}, nullptr).options.help);
}

TEST_CASE("options: --help lists every option") {
  const std::string help = help_text();
  for (const char* option :
       {"--url", "--hosts", "--scenario", "--file", "--clients", "--duration", "--transactions",
        "--rate", "--scale", "--protocol", "--hold-ms", "--init", "--connect-concurrency",
        "--connect-timeout", "--json", "--plot", "--progress", "--quiet", "--help"}) {
    CHECK_MESSAGE(help.find(option) != std::string::npos, option);
  }
  for (const char* scenario : {"select", "tpcb", "hold", "prepared", "churn", "idle"}) {
    CHECK(help.find(scenario) != std::string::npos);
  }
}

}  // namespace pgmux::bench
