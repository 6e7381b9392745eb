// libFuzzer target: the input as a stream of client messages of the extended
// query protocol (Parse, Bind, Describe, Close) and Query, plus the server's
// CommandComplete, through the inspectors of protocol/extended.h and the
// rewrites the proxy makes with its builders (a statement renamed in Parse,
// Bind, Describe and Close). Checks: parse then rebuild gives back the same
// bytes; a rename keeps everything else; a Bind header decided on a prefix is
// the same decision as on the whole message; nothing reads past a message.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/extended.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace pgmux::protocol;  // NOLINT(google-build-using-namespace)
using pgmux::fuzz::check;
using pgmux::fuzz::isolate;
using pgmux::fuzz::same;
using pgmux::fuzz::view;

constexpr uint32_t kMaxMessageSize = 1 << 20;
// A name of the shape the proxy gives a client's statement on a server.
constexpr std::string_view kRenamed = "pgmux_s_123456789";
// Bind prefixes up to this many bytes are each tried on their own: enough to
// cover both names of every seed without making each input quadratic.
constexpr size_t kMaxPrefixTried = 96;

void inspect_parse(ByteView message) {
  auto p = parse_parse(message);
  if (!p) return;
  check(p->param_types.size() == size_t{p->param_count} * 4);
  Bytes again;
  append_parse(again, p->name, p->query, p->param_count, p->param_types);
  check(same(message, again));

  Bytes renamed;
  append_parse(renamed, kRenamed, p->query, p->param_count, p->param_types);
  auto r = parse_parse(view(renamed));
  check(r.ok() && r->name == kRenamed && r->query == p->query && r->param_count == p->param_count &&
        std::equal(r->param_types.begin(), r->param_types.end(), p->param_types.begin(),
                   p->param_types.end()));
}

bool same_header(const BindHeader& a, const BindHeader& b) {
  return a.portal == b.portal && a.statement == b.statement && a.rest_offset == b.rest_offset;
}

// `message` is one whole Bind; `beyond` is the input from the same place on,
// which may run into the next message, as the proxy's input buffer does.
void inspect_bind(ByteView message, ByteView beyond) {
  auto whole = parse_bind_header(message);
  check(bind_header_complete(message));
  check(whole.ok() || !whole.error().sqlstate.empty());

  auto in_stream = parse_bind_header(beyond);
  check(in_stream.ok() == whole.ok());
  if (whole.ok()) check(same_header(*in_stream, *whole));

  for (size_t n = 0; n <= std::min(message.size(), kMaxPrefixTried); ++n) {
    const std::vector<uint8_t> prefix = isolate(message.first(n));
    auto part = parse_bind_header(prefix);
    const bool complete = bind_header_complete(prefix);
    check(complete == (part.ok() || !part.error().sqlstate.empty()));
    // "Need more" only while bytes are missing; any decision is final.
    if (!complete) {
      check(n < message.size());
      continue;
    }
    check(part.ok() == whole.ok());
    if (part.ok()) check(same_header(*part, *whole));
  }
  if (!whole.ok()) return;

  check(whole->rest_offset <= message.size());
  const ByteView rest = message.subspan(whole->rest_offset);
  Bytes again;
  append_bind_header(again, whole->portal, whole->statement, rest.size());
  again.append(pgmux::fuzz::text(rest));
  check(same(message, again));

  Bytes renamed;
  append_bind_header(renamed, whole->portal, kRenamed, rest.size());
  renamed.append(pgmux::fuzz::text(rest));
  auto r = parse_bind_header(view(renamed));
  check(r.ok() && r->portal == whole->portal && r->statement == kRenamed);
  check(frame_message(view(renamed), UINT32_MAX).size == renamed.size());
  check(pgmux::fuzz::text(view(renamed).subspan(r->rest_offset)) == pgmux::fuzz::text(rest));
}

void inspect_target(ByteView message, char type) {
  auto t = type == 'D' ? parse_describe(message) : parse_close(message);
  if (!t) return;
  check(t->kind == 'S' || t->kind == 'P');
  Bytes again;
  Bytes renamed;
  if (type == 'D') {
    append_describe(again, t->kind, t->name);
    append_describe(renamed, t->kind, kRenamed);
  } else {
    append_close(again, t->kind, t->name);
    append_close(renamed, t->kind, kRenamed);
  }
  check(same(message, again));
  auto r = type == 'D' ? parse_describe(view(renamed)) : parse_close(view(renamed));
  check(r.ok() && r->kind == t->kind && r->name == kRenamed);
}

// Query ('Q') has no inspector of its own: the proxy reads the NUL-terminated
// text after the header. The builder must produce exactly that shape.
void inspect_query(ByteView message) {
  const std::string_view body = pgmux::fuzz::text(message.subspan(kMessageHeaderSize));
  if (body.empty() || body.find('\0') != body.size() - 1) return;
  Bytes again;
  append_query(again, body.substr(0, body.size() - 1));
  check(same(message, again));
}

void inspect_message(ByteView message, ByteView beyond, char type) {
  switch (type) {
    case 'P':
      inspect_parse(message);
      break;
    case 'B':
      inspect_bind(message, beyond);
      break;
    case 'D':
      inspect_target(message, type);
      break;
    case 'C':
      // 'C' is Close from a client and CommandComplete from a server.
      inspect_target(message, type);
      if (auto tag = parse_command_complete(message)) {
        check(tag->find('\0') == std::string_view::npos);
        check(tag->size() + kMessageHeaderSize + 1 == message.size());
      }
      break;
    case 'Q':
      inspect_query(message);
      break;
    default:
      break;
  }
  // Every inspector rejects a message of another type.
  if (type != 'P') check(!parse_parse(message).ok());
  if (type != 'D') check(!parse_describe(message).ok());
  if (type != 'C') check(!parse_close(message).ok() && !parse_command_complete(message).ok());
  if (type != 'B') check(!parse_bind_header(message).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ByteView rest(data, size);
  for (;;) {
    const Frame f = frame_message(rest, kMaxMessageSize);
    if (!f.whole_in(rest)) break;
    const std::vector<uint8_t> message = isolate(rest.first(f.size));
    inspect_message(message, rest, f.type);
    rest = rest.subspan(f.size);
  }
  // A Bind cut anywhere, as the proxy sees it while bytes arrive.
  if (size >= 1 && data[0] == 'B') {
    const std::vector<uint8_t> whole = isolate(ByteView(data, size));
    auto h = parse_bind_header(whole);
    check(bind_header_complete(whole) == (h.ok() || !h.error().sqlstate.empty()));
  }
  return 0;
}
