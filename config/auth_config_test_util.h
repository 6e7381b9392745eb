// Helpers shared by the configuration tests.
#pragma once

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "config/config.h"

namespace pgmux::config::auth_test_util {

inline bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

inline Getenv env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

// A file in the temp directory with the given mode, removed when the test ends.
class TempFile {
 public:
  TempFile(std::string_view stem, std::string_view content, mode_t mode = 0600)
      : path_(std::filesystem::temp_directory_path() /
              ("pgmux-auth-test-" + std::string(stem) + "-" + std::to_string(::getpid()))) {
    std::ofstream(path_, std::ios::binary) << content;
    REQUIRE(::chmod(path_.c_str(), mode) == 0);
  }
  ~TempFile() { std::filesystem::remove(path_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

// The smallest configuration that validates: one database.
inline Config valid_config() {
  Config c;
  Upstream u;
  u.user = "alice";
  u.dbname = "app";
  c.databases.push_back(Database{"app", u});
  return c;
}

std::string error_of(const auto& result) {
  REQUIRE_FALSE(result.ok());
  return result.error().message;
}

}  // namespace pgmux::config::auth_test_util
