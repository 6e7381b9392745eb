// pgmux: a PostgreSQL connection-multiplexing proxy (transaction pooling).
#include <spdlog/spdlog.h>
#include <uv.h>

#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include "config/config.h"
#include "proxy/log.h"
#include "proxy/notify.h"
#include "proxy/proxy.h"

namespace {

constexpr const char* kUsage = R"(usage: pgmux [--config FILE]

Multiplexes any number of PostgreSQL clients onto a capped set of upstream
connections (transaction pooling).

options:
  -c, --config FILE   read settings from a TOML file (see docs/configuration.md)
      --check         load and validate the settings, print the result, exit
  -h, --help          show this help
  -V, --version       show the version

environment:
  DATABASE_URL        the upstream, e.g. postgresql://app:secret@db:5432/app;
                      clients connect to pgmux with the same database and user
  PGMUX_<KEY>         overrides any setting, e.g. PGMUX_LISTEN=0.0.0.0:6432,
                      PGMUX_MAX_SERVER_CONNECTIONS=15, PGMUX_LOG_LEVEL=debug
Passwords are read from the URL, the config file or a password_file, never
from the command line.
)";

}  // namespace

namespace {

int run(int argc, char** argv) {
  std::optional<std::string> config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (arg == "-V" || arg == "--version") {
      std::puts("pgmux 0.1.0");
      return 0;
    }
    if (arg == "--check") {
      check_only = true;
    } else if ((arg == "-c" || arg == "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(std::strlen("--config="));
    } else {
      std::fprintf(stderr, "pgmux: unknown argument \"%s\"\n\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }

  auto config = pgmux::config::load({config_path, {}});
  if (!config) {
    std::fprintf(stderr, "pgmux: %s\n", config.error().message.c_str());
    return 2;
  }
  if (check_only) {
    for (const std::string& warning : config->warnings) {
      std::fprintf(stderr, "pgmux: warning: %s\n", warning.c_str());
    }
    std::printf("pgmux: the configuration is valid (%zu databases)\n", config->databases.size());
    return 0;
  }
  pgmux::proxy::init_logging(config->log_level,
                             config->log_format == pgmux::config::LogFormat::kJson);

  uv_loop_t* loop = uv_default_loop();
  int exit_code = 0;
  {
    pgmux::proxy::Proxy proxy(*config, loop);
    proxy.set_load_options({config_path, {}});
    auto started = proxy.start();
    if (!started) {
      spdlog::error("{}", started.error().message);
      exit_code = 1;
    } else {
      proxy.handle_signals();
      pgmux::proxy::notify_systemd("READY=1");
    }
    proxy.run();
  }
  if (uv_loop_close(loop) != 0) {
    spdlog::error("the event loop closed with handles still open");
    return 1;
  }
  spdlog::info("pgmux stopped");
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  // Nothing inside throws by design; an allocation failure at start-up is
  // reported rather than left to std::terminate.
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgmux: fatal: %s\n", e.what());
    return 1;
  }
}
