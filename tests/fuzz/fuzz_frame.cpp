// libFuzzer target: the input as a stream of typed messages from a server or a
// client, framed with frame_message and handed to every inspector in
// protocol/messages.h and protocol/auth_messages.h. Besides "no crash", each
// inspector that accepts a message must agree with the matching builder:
// rebuilding from the parsed views gives back the same bytes (or, where the
// builder writes a canonical form, the same fields).
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/auth_messages.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/refusal.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace pgmux::protocol;  // NOLINT(google-build-using-namespace)
using pgmux::fuzz::check;
using pgmux::fuzz::same;
using pgmux::fuzz::view;

// Small enough that a fuzzer-made length field can point past the input.
constexpr uint32_t kMaxMessageSize = 1 << 20;

bool same_fields(const ErrorFields& a, const ErrorFields& b) {
  return a.severity == b.severity && a.sqlstate == b.sqlstate && a.message == b.message &&
         a.detail == b.detail && a.hint == b.hint;
}

void inspect_error(ByteView message, char type) {
  auto fields = parse_error_response(message);
  if (!fields) return;
  (void)is_capacity_refusal(fields->sqlstate, fields->message);
  // The builder writes a canonical form (S, V, C, M, D, H), so the round trip
  // compares fields, not bytes: extra fields like P or F are dropped.
  Bytes again;
  if (type == 'E') {
    append_error_response(again, fields->severity, fields->sqlstate, fields->message,
                          fields->detail, fields->hint);
  } else {
    append_notice_response(again, fields->severity, fields->sqlstate, fields->message,
                           fields->detail, fields->hint);
  }
  auto reparsed = parse_error_response(view(again));
  check(reparsed.ok() && same_fields(*fields, *reparsed));
}

void inspect_authentication(ByteView message) {
  auto request = parse_authentication(message);
  if (!request) return;
  Bytes again;
  switch (request->code) {
    case kAuthOk:
      append_authentication_ok(again);
      break;
    case kAuthCleartextPassword:
      append_authentication_cleartext(again);
      break;
    case kAuthMd5Password: {
      std::array<uint8_t, 4> salt{};
      check(request->data.size() == salt.size());
      std::copy(request->data.begin(), request->data.end(), salt.begin());
      append_authentication_md5(again, salt);
      break;
    }
    case kAuthSasl: {
      auto mechanisms = parse_sasl_mechanisms(request->data);
      if (!mechanisms) return;
      append_authentication_sasl(again, *mechanisms);
      break;
    }
    case kAuthSaslContinue:
      append_authentication_sasl_continue(again, pgmux::fuzz::text(request->data));
      break;
    case kAuthSaslFinal:
      append_authentication_sasl_final(again, pgmux::fuzz::text(request->data));
      break;
    default:
      return;  // Passed through by the proxy; no builder.
  }
  check(same(message, again));
}

// 'p' is one type byte for three messages; the proxy knows which one to
// expect from the authentication state, so every inspector sees every 'p'.
void inspect_password(ByteView message) {
  if (auto password = parse_password_message(message);
      password && password->find('\0') == std::string_view::npos) {
    Bytes again;
    append_password_message(again, *password);
    check(same(message, again));
  }
  if (auto initial = parse_sasl_initial_response(message);
      initial && initial->mechanism.find('\0') == std::string_view::npos) {
    // The builder always writes the data length, never -1, so an initial
    // response without data only round-trips by fields.
    Bytes again;
    append_sasl_initial_response(again, initial->mechanism, initial->data);
    auto reparsed = parse_sasl_initial_response(view(again));
    check(reparsed.ok() && reparsed->mechanism == initial->mechanism &&
          reparsed->data == initial->data);
  }
  if (auto data = parse_sasl_response(message)) {
    Bytes again;
    append_sasl_response(again, *data);
    check(same(message, again));
  }
}

void inspect_message(ByteView message, char type) {
  switch (type) {
    case 'E':
    case 'N':
      inspect_error(message, type);
      break;
    case 'R':
      inspect_authentication(message);
      break;
    case 'p':
      inspect_password(message);
      break;
    case 'S': {
      auto p = parse_parameter_status(message);
      if (!p) break;
      Bytes again;
      append_parameter_status(again, p->name, p->value);
      check(same(message, again));
      break;
    }
    case 'D': {
      auto row = parse_data_row(message);
      if (!row) break;
      Bytes again;
      append_data_row(again, *row);
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
  // Inspectors must reject, not misread, a message of another type.
  if (type != 'E' && type != 'N') check(!parse_error_response(message).ok());
  if (type != 'Z') check(!parse_ready_for_query(message).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A stream of typed messages. Each whole message is inspected from its own
  // exact-size copy, so that reading past its end is an ASan error.
  ByteView rest(data, size);
  for (;;) {
    const Frame f = frame_message(rest, kMaxMessageSize);
    if (f.status == FrameStatus::kNeedMore) {
      check(rest.size() < kMessageHeaderSize);
      break;
    }
    if (f.status == FrameStatus::kInvalid) break;
    check(f.size >= kMessageHeaderSize && f.size <= kMaxMessageSize);
    check(static_cast<uint8_t>(f.type) == rest[0]);
    if (!f.whole_in(rest)) break;
    const std::vector<uint8_t> message = pgmux::fuzz::isolate(rest.first(f.size));
    inspect_message(message, f.type);
    rest = rest.subspan(f.size);
  }

  // The same input fed one byte at a time must frame the first message the
  // same way: "need more" until the header is there, then the same answer.
  const Frame whole = frame_message(ByteView(data, size), kMaxMessageSize);
  for (size_t n = 0; n <= std::min<size_t>(size, kMessageHeaderSize); ++n) {
    const Frame part = frame_message(ByteView(data, n), kMaxMessageSize);
    if (n < kMessageHeaderSize) {
      check(part.status == FrameStatus::kNeedMore);
    } else {
      check(part.status == whole.status && part.size == whole.size && part.type == whole.type);
    }
  }
  return 0;
}
