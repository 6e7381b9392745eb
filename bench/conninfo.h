// Connection parameters for PQconnectStartParams: the --url parsed once,
// then one keyword/value array per --hosts entry.
#pragma once

#include <string>
#include <vector>

namespace pgmux::bench {

class ConnTargets {
 public:
  // Parses `url` (postgresql:// or key=value) with PQconninfoParse. With
  // `hosts`, target i replaces the host (and drops hostaddr) with hosts[i].
  // Returns false with `error` set when libpq rejects the URL.
  bool parse(const std::string& url, const std::vector<std::string>& hosts, std::string& error);

  size_t size() const { return targets_.size(); }
  // Null-terminated arrays for PQconnectStartParams(keys, values, 0); valid
  // as long as this object lives and parse() is not called again.
  const char* const* keys(size_t target) const { return targets_[target].key_ptrs.data(); }
  const char* const* values(size_t target) const { return targets_[target].value_ptrs.data(); }
  // The first target as a key=value conninfo, for blocking set-up queries.
  std::string conninfo() const;

 private:
  struct Target {
    std::vector<std::string> keys, values;
    std::vector<const char*> key_ptrs, value_ptrs;
  };
  std::vector<Target> targets_;
};

}  // namespace pgmux::bench
