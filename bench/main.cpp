// pgmux-bench: see help_text() in bench/options.cpp, and bench/HARNESS.md.
#include <libpq-fe.h>
#include <sys/resource.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "bench/conninfo.h"
#include "bench/options.h"
#include "bench/report.h"
#include "bench/runner.h"
#include "bench/scenario.h"
#include "bench/svg.h"

namespace pgmux::bench {
namespace {

// A blocking connection for the set-up queries before the run.
class SetupConnection {
 public:
  explicit SetupConnection(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {}
  ~SetupConnection() { PQfinish(conn_); }
  SetupConnection(const SetupConnection&) = delete;
  SetupConnection& operator=(const SetupConnection&) = delete;

  bool ok(std::string& error) const {
    if (PQstatus(conn_) == CONNECTION_OK) return true;
    error = PQerrorMessage(conn_);
    return false;
  }
  // Runs `sql`; the first value of the first row in `value`.
  bool exec(const std::string& sql, std::string& value, std::string& error) {
    PGresult* result = PQexec(conn_, sql.c_str());
    const ExecStatusType status = PQresultStatus(result);
    const bool good = status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK;
    if (!good) error = PQresultErrorMessage(result);
    if (status == PGRES_TUPLES_OK && PQntuples(result) > 0) value = PQgetvalue(result, 0, 0);
    PQclear(result);
    return good;
  }

 private:
  PGconn* conn_;
};

int init_tables(const ConnTargets& targets, int scale) {
  SetupConnection conn(targets.conninfo());
  std::string error;
  if (!conn.ok(error)) {
    std::fprintf(stderr, "pgmux-bench: connect: %s", error.c_str());
    return 1;
  }
  for (const std::string& sql : init_statements(scale)) {
    std::string value;
    if (!conn.exec(sql, value, error)) {
      std::fprintf(stderr, "pgmux-bench: %s: %s", sql.c_str(), error.c_str());
      return 1;
    }
  }
  std::fprintf(stderr, "pgmux-bench: pgbench tables created at scale %d\n", scale);
  return 0;
}

int detect_scale(const ConnTargets& targets, int& scale) {
  SetupConnection conn(targets.conninfo());
  std::string error;
  std::string value;
  if (!conn.ok(error)) {
    std::fprintf(stderr, "pgmux-bench: connect: %s", error.c_str());
    return 1;
  }
  if (!conn.exec("SELECT count(*) FROM pgbench_branches", value, error)) {
    std::fprintf(stderr,
                 "pgmux-bench: cannot read the scale: %s"
                 "pgmux-bench: create the tables first: pgbench -i -s N URL (or --init)\n",
                 error.c_str());
    return 1;
  }
  scale = std::atoi(value.c_str());
  if (scale < 1) {
    std::fprintf(stderr, "pgmux-bench: pgbench_branches is empty; run pgbench -i first\n");
    return 1;
  }
  return 0;
}

// Lifts the soft limit on open files to the hard limit: each client is a
// socket.
void raise_file_limit(int clients) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < static_cast<rlim_t>(clients) + 64) {
    std::fprintf(stderr,
                 "pgmux-bench: warning: %d clients but only %llu open files allowed "
                 "(raise ulimit -n)\n",
                 clients, static_cast<unsigned long long>(limit.rlim_cur));
  }
}

int run(int argc, char** argv) {
  ParsedOptions parsed = parse_options(argc, argv, std::getenv("DATABASE_URL"));
  if (parsed.options.help) {
    std::fputs(help_text().c_str(), stdout);
    return 0;
  }
  if (!parsed.error.empty()) {
    std::fprintf(stderr, "pgmux-bench: %s\n", parsed.error.c_str());
    return 2;
  }
  const Options& options = parsed.options;

  ConnTargets targets;
  std::string error;
  if (!targets.parse(options.url, options.hosts, error)) {
    std::fprintf(stderr, "pgmux-bench: --url: %s", error.c_str());
    return 2;
  }
  if (options.init) return init_tables(targets, options.scale > 0 ? options.scale : 1);

  int scale = options.scale;
  if (Scenario::needs_scale(options.scenario) && scale == 0) {
    if (const int rc = detect_scale(targets, scale); rc != 0) return rc;
  }
  std::string file_sql;
  if (options.scenario == ScenarioKind::kFile) {
    std::ifstream in(options.file);
    if (!in) {
      std::fprintf(stderr, "pgmux-bench: cannot read %s\n", options.file.c_str());
      return 2;
    }
    std::ostringstream text;
    text << in.rdbuf();
    file_sql = text.str();
  }
  raise_file_limit(options.clients);

  const Scenario scenario(options, scale > 0 ? scale : 1, std::move(file_sql));
  uv_loop_t loop;
  uv_loop_init(&loop);
  Results results;
  {
    Runner runner(&loop, options, targets, scenario);
    runner.start();
    uv_run(&loop, UV_RUN_DEFAULT);
    results = runner.take_results();
  }
  // The clients' last poll handles close after the runner is gone.
  uv_run(&loop, UV_RUN_DEFAULT);
  if (uv_loop_close(&loop) != 0) {
    std::fprintf(stderr, "pgmux-bench: internal error: a libuv handle was left open\n");
    return 1;
  }

  if (options.json) {
    std::fputs(json_text(results).c_str(), stdout);
    std::fputc('\n', stdout);
  } else {
    std::fputs(summary_text(results).c_str(), stdout);
  }
  if (!options.plot.empty()) {
    std::ofstream out(options.plot);
    out << svg_plot(results);
    if (!out) {
      std::fprintf(stderr, "pgmux-bench: cannot write %s\n", options.plot.c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace pgmux::bench

int main(int argc, char** argv) { return pgmux::bench::run(argc, argv); }
