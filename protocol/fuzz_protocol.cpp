// libFuzzer target over framing, the inspectors and the SCRAM client.
// Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DPGMUX_FUZZ=ON; run under ASan and UBSan.
//
// Besides "no crash", it checks that every inspector that accepts a message
// agrees with the matching builder: rebuilding from the parsed views gives
// back the same bytes.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/auth.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace {

using namespace pgmux::protocol;

constexpr uint32_t kMaxMessageSize = 1 << 20;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

ByteView view(const Bytes& b) { return {reinterpret_cast<const uint8_t*>(b.data()), b.size()}; }

bool same(ByteView a, const Bytes& b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), view(b).begin());
}

void inspect_startup(ByteView packet) {
  auto p = parse_startup_packet(packet);
  if (!p) return;
  if (p->kind == StartupKind::kCancelRequest) {
    Bytes again;
    append_cancel_request(again, p->cancel_pid, p->cancel_secret);
    check(same(packet, again));
  }
  // The database falls back to the user name.
  if (p->kind == StartupKind::kStartup && !p->user.empty()) check(!p->database.empty());
}

void inspect_message(ByteView message, char type) {
  switch (type) {
    case 'E':
    case 'N':
      (void)parse_error_response(message);
      break;
    case 'R': {
      auto a = parse_authentication(message);
      if (a && a->code == kAuthSasl) (void)parse_sasl_mechanisms(a->data);
      break;
    }
    case 'S': {
      auto p = parse_parameter_status(message);
      if (!p) break;
      Bytes again;
      append_parameter_status(again, p->name, p->value);
      check(same(message, again));
      break;
    }
    case 'K': {
      auto k = parse_backend_key_data(message);
      if (!k) break;
      Bytes again;
      append_backend_key_data(again, k->pid, k->secret);
      check(same(message, again));
      break;
    }
    case 'Z': {
      auto z = parse_ready_for_query(message);
      if (!z) break;
      Bytes again;
      append_ready_for_query(again, *z);
      check(same(message, again));
      break;
    }
    default:
      break;
  }
}

// PBKDF2 cost grows with the iteration count a hostile server picks; that is
// a timeout for the fuzzer, not a bug, so large counts are skipped here.
bool cheap_iterations(std::string_view text) {
  const size_t at = text.find(",i=");
  if (at == std::string_view::npos) return true;
  size_t digits = 0;
  for (size_t i = at + 3; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) ++digits;
  return digits <= 3;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const ByteView input(data, size);

  // The input as a client's first bytes: startup-type packets back to back.
  for (ByteView rest = input;;) {
    const Frame f = frame_startup(rest);
    if (!f.whole_in(rest)) break;
    check(f.size >= 8);
    inspect_startup(rest.first(f.size));
    rest = rest.subspan(f.size);
  }

  // The input as a stream of typed messages.
  for (ByteView rest = input;;) {
    const Frame f = frame_message(rest, kMaxMessageSize);
    if (!f.whole_in(rest)) break;
    check(f.size >= 5 && f.size <= kMaxMessageSize);
    inspect_message(rest.first(f.size), f.type);
    rest = rest.subspan(f.size);
  }

  // The input as a SCRAM server-first-message, then as a server-final one.
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (cheap_iterations(text)) {
    ScramClient client("", "pencil", "rOprNGfwEbeRWgbNEkqO");
    if (client.handle_server_first(text)) (void)client.verify_server_final(text);
  }
  auto decoded = base64_decode(text);
  if (decoded) check(base64_encode(*decoded) == text);
  return 0;
}
