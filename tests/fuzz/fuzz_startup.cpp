// libFuzzer target: the input as a client's first bytes, startup-type packets
// back to back (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest),
// framed with frame_startup and inspected with parse_startup_packet; then each
// `options` parameter through the proxy's parse_startup_options and the
// parameter names through normalise_param_name, as login.cpp does.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/sql_scan.h"
#include "proxy/session_params.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace pgmux::protocol;  // NOLINT(google-build-using-namespace)
using pgmux::fuzz::check;
using pgmux::fuzz::same;

bool plain_name(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '$';
    if (!ok) return false;
  }
  return true;
}

void inspect_options(std::string_view options, pgmux::proxy::ParamOverrides& overrides) {
  const pgmux::proxy::StartupOptions parsed = pgmux::proxy::parse_startup_options(options);
  for (const auto& [name, value] : parsed.settings) {
    check(!name.empty());
    std::optional<std::string> normal = pgmux::proxy::normalise_param_name(name);
    if (normal) {
      check(plain_name(*normal));
      overrides.set(*normal, value, false);
    }
  }
}

void inspect_startup(const std::vector<uint8_t>& bytes) {
  const ByteView packet(bytes);
  auto p = parse_startup_packet(packet);
  if (!p) return;
  check(p->version == read_u32(packet.data() + 4));
  switch (p->kind) {
    case StartupKind::kCancelRequest: {
      Bytes again;
      append_cancel_request(again, p->cancel_pid, p->cancel_secret);
      check(same(packet, again));
      return;
    }
    case StartupKind::kSslRequest: {
      Bytes again;
      append_ssl_request(again);
      check(same(packet, again));
      return;
    }
    case StartupKind::kGssEncRequest:
      check(packet.size() == 8);
      return;
    case StartupKind::kStartup:
      break;
  }
  // The database falls back to the user name.
  if (!p->user.empty()) check(!p->database.empty());
  if (p->version == kProtocolVersion3) {
    std::vector<std::pair<std::string, std::string>> params;
    for (const auto& [name, value] : p->params) params.emplace_back(name, value);
    Bytes again;
    append_startup_message(again, params);
    check(same(packet, again));
  }

  // Startup parameters become session overrides, later replayed on servers
  // as set_config() calls. A value must stay inside its string literal: the
  // generated SQL holds no statement that changes the session.
  pgmux::proxy::ParamOverrides overrides;
  for (const auto& [name, value] : p->params) {
    if (name == "options") {
      inspect_options(value, overrides);
      continue;
    }
    std::optional<std::string> normal = pgmux::proxy::normalise_param_name(name);
    if (normal) {
      check(plain_name(*normal));
      overrides.set(*normal, value, false);
    }
  }
  std::string sql;
  pgmux::proxy::append_param_sync(sql, overrides, pgmux::proxy::ParamOverrides{});
  check(overrides.empty() == sql.empty());
  check(scan_sql(sql).empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (ByteView rest(data, size);;) {
    const Frame f = frame_startup(rest);
    if (f.status == FrameStatus::kNeedMore) {
      check(rest.size() < kStartupHeaderSize);
      break;
    }
    if (!f.whole_in(rest)) break;
    check(f.size >= 8 && f.size <= kMaxStartupPacketSize);
    // Its own exact-size copy, so that reading past the packet is an ASan error.
    inspect_startup(pgmux::fuzz::isolate(rest.first(f.size)));
    rest = rest.subspan(f.size);
  }

  // The whole input as the value of an `options` parameter.
  pgmux::proxy::ParamOverrides overrides;
  inspect_options(pgmux::fuzz::text(ByteView(data, size)), overrides);
  return 0;
}
