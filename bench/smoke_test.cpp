// pgmux-bench end to end: every scenario for about two seconds against pgmux
// in front of a real PostgreSQL, reading the --json object back through
// python3's json module (as bench/compare does). Asserts that the harness
// works (no errors, transactions happen), never a speed.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "tests/pg_fixture.h"
#include "tests/proxy_fixture.h"

namespace pgmux::testing {
namespace {

constexpr const char* kBench = PGMUX_BENCH_BINARY;
constexpr const char* kPgbench = "/usr/lib/postgresql/15/bin/pgbench";

// One PostgreSQL with the pgbench tables (scale 1) for every test case.
PgServer& pg() {
  static PgServer server;
  static const bool initialised = [] {
    CommandResult r = run_command(std::string(kPgbench) + " -i -s 1 -q '" +
                                  server.url(kScramUser, kScramPassword) + "'");
    INFO(r.output);
    REQUIRE(r.status == 0);
    return true;
  }();
  (void)initialised;
  return server;
}

std::string temp_path(const std::string& name) {
  static const std::string dir = [] {
    char pattern[] = "/tmp/pgmux-bench-smoke-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    REQUIRE(made != nullptr);
    return std::string(made);
  }();
  return dir + "/" + name;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct Summary {
  std::map<std::string, double> numbers;  // Top-level keys and latency_us.p50 etc.
  double operator[](const std::string& key) const {
    auto it = numbers.find(key);
    REQUIRE_MESSAGE(it != numbers.end(), "JSON has no " << key);
    return it->second;
  }
};

// Runs pgmux-bench with `args` and --json, and reads the object back with
// python3's json module; fails the test if either fails.
Summary bench(const ProxyRunner& proxy, const std::string& args) {
  const std::string out = temp_path("out.json");
  const std::string command = std::string(kBench) + " --url '" + proxy.url() + "' --quiet --json " +
                              args + " > '" + out + "'";
  CommandResult r = run_command(command);
  INFO(command << "\n" << r.output << read_file(out));
  REQUIRE(r.status == 0);
  const char* reader =
      "import json, sys\n"
      "d = json.load(open(sys.argv[1]))\n"
      "for k in ('clients', 'duration_s', 'transactions', 'tps', 'errors', 'capacity_errors',\n"
      "          'connected', 'connect_failures'):\n"
      "    print(k, float(d[k]))\n"
      "for k in ('mean', 'p50', 'p90', 'p99', 'p999', 'max'):\n"
      "    print('latency_us.' + k, float(d['latency_us'][k]))\n"
      "for k in ('p50', 'p99'):\n"
      "    print('connect_us.' + k, float(d['connect_us'][k]))\n"
      "print('errors_by_kind', float(len(d['errors_by_kind'])))\n"
      "print('timeline', float(len(d['timeline'])))\n"
      "for i in d['timeline']:\n"
      "    float(i['t']), float(i['tps']), float(i['p99_us']), float(i['errors'])\n";
  const std::string script = temp_path("read.py");
  std::ofstream(script) << reader;
  CommandResult parsed = run_command("python3 '" + script + "' '" + out + "'");
  INFO(parsed.output);
  REQUIRE(parsed.status == 0);
  Summary s;
  std::istringstream lines(parsed.output);
  std::string key;
  double value = 0;
  while (lines >> key >> value) s.numbers[key] = value;
  return s;
}

// The common expectations of a run that did transactions.
void check_clean(const Summary& s, int clients) {
  CHECK(s["errors"] == 0);
  CHECK(s["errors_by_kind"] == 0);
  CHECK(s["capacity_errors"] == 0);
  CHECK(s["transactions"] > 0);
  CHECK(s["clients"] == clients);
  CHECK(s["latency_us.p50"] > 0);
  CHECK(s["latency_us.p50"] <= s["latency_us.p99"]);
  CHECK(s["latency_us.p99"] <= s["latency_us.max"]);
  CHECK(s["timeline"] >= 1);
}

}  // namespace

TEST_CASE("pgmux-bench --help lists the options and exits 0") {
  CommandResult r = run_command(std::string(kBench) + " --help");
  CHECK(r.status == 0);
  CHECK(r.output.find("--connect-concurrency") != std::string::npos);
  CommandResult bad = run_command(std::string(kBench) + " --url x --clients none");
  CHECK(bad.status == 2);
}

TEST_CASE("pgmux-bench select (simple, with a plot; extended) and tpcb through pgmux") {
  ProxyRunner proxy(make_config(pg()));
  const std::string svg = temp_path("plot.svg");
  Summary simple = bench(proxy, "-s select -c 20 -T 2 --plot '" + svg + "'");
  check_clean(simple, 20);
  CHECK(simple["connected"] == 20);
  const std::string picture = read_file(svg);
  CHECK((picture.starts_with("<?xml") || picture.starts_with("<svg")));
  CHECK(picture.find("</svg>") != std::string::npos);

  check_clean(bench(proxy, "-s select -M extended -c 20 -T 1.5"), 20);
  check_clean(bench(proxy, "-s tpcb -c 10 -T 2"), 10);
}

TEST_CASE("pgmux-bench prepared and a fixed number of transactions") {
  config::Config config = make_config(pg());
  config.max_server_connections = 4;
  config.min_server_connections = 1;
  ProxyRunner proxy(config);
  // More clients than servers: pgmux moves the named statement between them.
  check_clean(bench(proxy, "-s prepared -c 12 -T 1.5"), 12);
  Summary counted = bench(proxy, "-s select -c 4 --transactions 500");
  check_clean(counted, 4);
  CHECK(counted["transactions"] == 500);
}

TEST_CASE("pgmux-bench hold with more clients than servers, and churn") {
  config::Config config = make_config(pg());
  config.max_server_connections = 4;
  config.min_server_connections = 1;
  ProxyRunner proxy(config);
  check_clean(bench(proxy, "-s hold --hold-ms 20 -c 30 -T 2"), 30);
  Summary churn = bench(proxy, "-s churn -c 4 -T 2");
  check_clean(churn, 4);
  CHECK(churn["connect_us.p50"] > 0);
}

TEST_CASE("pgmux-bench idle holds 200 connections") {
  ProxyRunner proxy(make_config(pg()));
  Summary idle = bench(proxy, "-s idle -c 200 -T 1 --connect-concurrency 32");
  CHECK(idle["errors"] == 0);
  CHECK(idle["connected"] == 200);
  CHECK(idle["connect_failures"] == 0);
  CHECK(idle["transactions"] == 0);
}

TEST_CASE("pgmux-bench open loop (--rate) and a custom --file") {
  ProxyRunner proxy(make_config(pg()));
  Summary rate = bench(proxy, "-s select -c 5 --rate 200 -T 2");
  check_clean(rate, 5);
  // An open loop never runs ahead of its schedule.
  CHECK(rate["transactions"] <= 200 * rate["duration_s"] + 1);

  const std::string sql = temp_path("custom.sql");
  std::ofstream(sql) << "SELECT count(*) FROM pgbench_branches;\nSELECT 1;\n";
  check_clean(bench(proxy, "--file '" + sql + "' -c 5 -T 1.5"), 5);
}

TEST_CASE("pgmux-bench --init creates pgbench's tables, and a run reads the scale from them") {
  // In the postgres database, apart from the tables pgbench -i made in app.
  const std::string url = pg().superuser_conninfo("postgres");
  CommandResult init = run_command(std::string(kBench) + " --url \"" + url + "\" --init --scale 1");
  INFO(init.output);
  REQUIRE(init.status == 0);
  CHECK(pg().query_value("SELECT count(*) FROM pgbench_accounts") == "100000");
  CHECK(pg().query_value("SELECT count(*) FROM pgbench_tellers") == "10");
  CHECK(pg().query_value("SELECT count(*) FROM pgbench_branches") == "1");
  CommandResult run = run_command(std::string(kBench) + " --url \"" + url +
                                  "\" -s tpcb -M extended -c 2 -t 50 --quiet");
  INFO(run.output);
  CHECK(run.status == 0);
  CHECK(run.output.find("transactions:        50") != std::string::npos);
  CHECK(run.output.find("errors:              0") != std::string::npos);
}

}  // namespace pgmux::testing
