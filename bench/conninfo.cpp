#include "bench/conninfo.h"

#include <libpq-fe.h>

namespace pgmux::bench {
namespace {

// Quotes a conninfo value: 'it''s' style, backslash-escaped.
std::string quote(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

}  // namespace

bool ConnTargets::parse(const std::string& url, const std::vector<std::string>& hosts,
                        std::string& error) {
  char* message = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &message);
  if (options == nullptr) {
    error = message != nullptr ? message : "out of memory";
    PQfreemem(message);
    return false;
  }
  Target base;
  bool has_application_name = false;
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    base.keys.emplace_back(o->keyword);
    base.values.emplace_back(o->val);
    if (base.keys.back() == "application_name") has_application_name = true;
  }
  PQconninfoFree(options);
  if (!has_application_name) {
    base.keys.emplace_back("fallback_application_name");
    base.values.emplace_back("pgmux-bench");
  }

  targets_.clear();
  const size_t count = hosts.empty() ? 1 : hosts.size();
  for (size_t i = 0; i < count; ++i) {
    Target t;
    for (size_t k = 0; k < base.keys.size(); ++k) {
      if (!hosts.empty() && (base.keys[k] == "host" || base.keys[k] == "hostaddr")) continue;
      t.keys.push_back(base.keys[k]);
      t.values.push_back(base.values[k]);
    }
    if (!hosts.empty()) {
      t.keys.emplace_back("host");
      t.values.push_back(hosts[i]);
    }
    targets_.push_back(std::move(t));
  }
  // Pointers last: the strings no longer move.
  for (Target& t : targets_) {
    for (size_t k = 0; k < t.keys.size(); ++k) {
      t.key_ptrs.push_back(t.keys[k].c_str());
      t.value_ptrs.push_back(t.values[k].c_str());
    }
    t.key_ptrs.push_back(nullptr);
    t.value_ptrs.push_back(nullptr);
  }
  return true;
}

std::string ConnTargets::conninfo() const {
  std::string out;
  const Target& t = targets_.front();
  for (size_t k = 0; k < t.keys.size(); ++k) {
    if (!out.empty()) out += ' ';
    out += t.keys[k] + "=" + quote(t.values[k]);
  }
  return out;
}

}  // namespace pgmux::bench
