// The pgmux binary as a child process, for tests that need real signals or
// several pgmux instances: a temporary folder holding `pgmux.toml` and
// `pgmux.log` (the child's stdout and stderr), removed with the process.
#pragma once

#include <doctest/doctest.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>

#include "tests/pg_fixture.h"

namespace pgmux::testing {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

// A pgmux child process reading `pgmux.toml` in its own temporary folder,
// its stderr and stdout in `pgmux.log` there. Nothing runs until start();
// the destructor kills the process (SIGKILL) if it still runs.
class PgmuxProcess {
 public:
  using Clock = std::chrono::steady_clock;

  // The process is to listen on `port` (a free one when 0); the
  // configuration written must say so.
  explicit PgmuxProcess(uint16_t port = 0) : port_(port != 0 ? port : free_port()) {
    char pattern[] = "/tmp/pgmux-process-XXXXXX";
    REQUIRE(mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    toml_ = dir_ + "/pgmux.toml";
    log_ = dir_ + "/pgmux.log";
  }
  ~PgmuxProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }
  PgmuxProcess(const PgmuxProcess&) = delete;
  PgmuxProcess& operator=(const PgmuxProcess&) = delete;

  // Replaces pgmux.toml (a running process reads it again on SIGHUP).
  void write_raw_config(const std::string& text) { write_file(toml_, text); }

  // Runs the binary on pgmux.toml. REQUIRES: not started yet.
  void start() {
    const std::string config_arg = "--config=" + toml_;
    const std::string path =
        std::string("PATH=") + (std::getenv("PATH") ? std::getenv("PATH") : "");
    const int log_fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(log_fd >= 0);
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      dup2(log_fd, 1);
      dup2(log_fd, 2);
      const char* argv[] = {PGMUX_BINARY, config_arg.c_str(), nullptr};
      const char* envp[] = {path.c_str(), nullptr};
      execve(PGMUX_BINARY, const_cast<char* const*>(argv), const_cast<char* const*>(envp));
      _exit(127);
    }
    ::close(log_fd);
  }

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string log() const { return read_file(log_); }
  std::string conninfo(const std::string& user = kScramUser,
                       const std::string& password = kScramPassword,
                       const std::string& dbname = "app") const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + user +
           " password=" + password + " dbname=" + dbname + " sslmode=disable connect_timeout=2";
  }
  void signal(int number) const { REQUIRE(kill(pid_, number) == 0); }

  // Polls until pgmux answers (or fails the test if it exited).
  void wait_ready() { wait_ready(conninfo()); }
  // The same, pinging with `ping_conninfo`.
  void wait_ready(const std::string& ping_conninfo) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (PQping(ping_conninfo.c_str()) != PQPING_OK) {
      REQUIRE_FALSE(exited());
      REQUIRE(Clock::now() < deadline);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  // Polls until the log holds `text`.
  bool wait_log(const std::string& text,
                std::chrono::milliseconds limit = std::chrono::seconds(5)) const {
    const auto deadline = Clock::now() + limit;
    while (log().find(text) == std::string::npos) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  // Whether the process has exited (reaps it); see exited_cleanly().
  bool exited() {
    if (pid_ <= 0) return true;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) != pid_) return false;
    status_ = status;
    pid_ = -1;
    return true;
  }
  bool wait_exit(std::chrono::milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (!exited()) {
      if (Clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  bool exited_cleanly() const { return WIFEXITED(status_) && WEXITSTATUS(status_) == 0; }

 private:
  uint16_t port_;
  std::string dir_, toml_, log_;
  pid_t pid_ = -1;
  int status_ = 0;
};

}  // namespace pgmux::testing
