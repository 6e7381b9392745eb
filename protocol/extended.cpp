#include "protocol/extended.h"

#include <cassert>
#include <cstring>
#include <limits>

#include "protocol/sqlstate.h"
#include "protocol/wire.h"

namespace pgmux::protocol {

using namespace wire;  // NOLINT(google-build-using-namespace): internal helpers.

namespace {

// ---- Writing ----------------------------------------------------------------
void append_empty(Bytes& out, char type) {
  out.push_back(type);
  put_u32(out, 4);
}

void append_target(Bytes& out, char type, char kind, std::string_view name) {
  assert(kind == 'S' || kind == 'P');
  const size_t at = begin_message(out, type);
  out.push_back(kind);
  put_cstring(out, name);
  patch_length(out, at);
}

// ---- Reading ----------------------------------------------------------------

// Finds the NUL ending a string that starts at `from`, looking no further
// than `limit`. Returns `limit` when there is none.
size_t find_nul(ByteView bytes, size_t from, size_t limit) {
  if (from >= limit) return limit;
  const void* nul = std::memchr(bytes.data() + from, 0, limit - from);
  if (nul == nullptr) return limit;
  return static_cast<size_t>(static_cast<const uint8_t*>(nul) - bytes.data());
}

std::string_view text(ByteView bytes, size_t begin, size_t end) {
  return {reinterpret_cast<const char*>(bytes.data()) + begin, end - begin};
}

// A whole typed message's body [kMessageHeaderSize, size) after the type
// byte and the length field have been checked.
struct Body {
  ByteView bytes;  // The whole message.
  size_t pos = kMessageHeaderSize;

  bool read_cstring(std::string_view* s) {
    const size_t nul = find_nul(bytes, pos, bytes.size());
    if (nul == bytes.size()) return false;
    *s = text(bytes, pos, nul);
    pos = nul + 1;
    return true;
  }
  bool done() const { return pos == bytes.size(); }
};

// Checks the type byte and that the length field covers exactly the message.
Result<Body> open_message(ByteView message, char type, std::string_view what) {
  if (message.size() < kMessageHeaderSize) return malformed(what, "shorter than its header");
  if (static_cast<char>(message[0]) != type) return malformed(what, "wrong message type");
  if (uint64_t{read_u32(message.data() + 1)} + 1 != message.size()) {
    return malformed(what, "length field does not match message size");
  }
  return Body{message};
}

Result<TargetMessage> parse_target(ByteView message, char type, std::string_view what) {
  auto body = open_message(message, type, what);
  if (!body) return body.error();
  if (body->done()) return malformed(what, "missing kind");
  TargetMessage out;
  out.kind = static_cast<char>(message[kMessageHeaderSize]);
  if (out.kind != 'S' && out.kind != 'P') return malformed(what, "kind is neither 'S' nor 'P'");
  body->pos += 1;
  if (!body->read_cstring(&out.name)) return malformed(what, "name is missing its terminator");
  if (!body->done()) return malformed(what, "bytes after the name");
  return out;
}

// The outcome of looking at a Bind prefix, shared by parse_bind_header and
// bind_header_complete so that the latter never builds an Error.
enum class BindScan { kOk, kNeedMore, kWrongType, kBadLength, kUnterminated };

BindScan scan_bind_header(ByteView prefix, BindHeader* out) {
  if (prefix.size() < kMessageHeaderSize) return BindScan::kNeedMore;
  if (static_cast<char>(prefix[0]) != 'B') return BindScan::kWrongType;
  const uint64_t size = uint64_t{read_u32(prefix.data() + 1)} + 1;
  if (size < kMessageHeaderSize) return BindScan::kBadLength;
  // The prefix may run into the next message; never look past this one.
  const bool whole = prefix.size() >= size;
  const size_t limit = whole ? static_cast<size_t>(size) : prefix.size();

  const size_t portal_end = find_nul(prefix, kMessageHeaderSize, limit);
  if (portal_end == limit) return whole ? BindScan::kUnterminated : BindScan::kNeedMore;
  const size_t statement_end = find_nul(prefix, portal_end + 1, limit);
  if (statement_end == limit) return whole ? BindScan::kUnterminated : BindScan::kNeedMore;

  out->portal = text(prefix, kMessageHeaderSize, portal_end);
  out->statement = text(prefix, portal_end + 1, statement_end);
  out->rest_offset = statement_end + 1;
  return BindScan::kOk;
}

}  // namespace

// ---- Parse ------------------------------------------------------------------

Result<ParseMessage> parse_parse(ByteView message) {
  constexpr std::string_view kWhat = "Parse";
  auto body = open_message(message, 'P', kWhat);
  if (!body) return body.error();
  ParseMessage out;
  if (!body->read_cstring(&out.name)) return malformed(kWhat, "name is missing its terminator");
  if (!body->read_cstring(&out.query)) return malformed(kWhat, "query is missing its terminator");
  if (message.size() - body->pos < 2) return malformed(kWhat, "missing parameter count");
  out.param_count = read_u16(message.data() + body->pos);
  body->pos += 2;
  if (message.size() - body->pos != size_t{out.param_count} * 4) {
    return malformed(kWhat, "parameter types do not match the parameter count");
  }
  out.param_types = message.subspan(body->pos);
  return out;
}

void append_parse(Bytes& out, std::string_view name, std::string_view query, uint16_t param_count,
                  ByteView param_types) {
  assert(param_types.size() == size_t{param_count} * 4);
  const size_t at = begin_message(out, 'P');
  put_cstring(out, name);
  put_cstring(out, query);
  put_u16(out, param_count);
  out.append(reinterpret_cast<const char*>(param_types.data()), param_types.size());
  patch_length(out, at);
}

// ---- Bind -------------------------------------------------------------------

Result<BindHeader> parse_bind_header(ByteView prefix) {
  constexpr std::string_view kWhat = "Bind";
  BindHeader out;
  switch (scan_bind_header(prefix, &out)) {
    case BindScan::kOk:
      return out;
    case BindScan::kNeedMore:
      // "need more" fits in the small-string buffer: no allocation while
      // waiting for bytes.
      return Error{std::string(), "need more"};
    case BindScan::kWrongType:
      return malformed(kWhat, "wrong message type");
    case BindScan::kBadLength:
      return malformed(kWhat, "length field below 4");
    case BindScan::kUnterminated:
      return malformed(kWhat, "portal or statement name runs past the message");
  }
  return malformed(kWhat, "unreachable");
}

bool bind_header_complete(ByteView prefix) {
  BindHeader ignored;
  return scan_bind_header(prefix, &ignored) != BindScan::kNeedMore;
}

void append_bind_header(Bytes& out, std::string_view portal, std::string_view statement,
                        size_t rest_size) {
  const uint64_t length =
      uint64_t{4} + portal.size() + 1 + statement.size() + 1 + uint64_t{rest_size};
  assert(length <= std::numeric_limits<uint32_t>::max());
  out.push_back('B');
  put_u32(out, static_cast<uint32_t>(length));
  put_cstring(out, portal);
  put_cstring(out, statement);
}

// ---- Describe and Close -----------------------------------------------------

Result<TargetMessage> parse_describe(ByteView message) {
  return parse_target(message, 'D', "Describe");
}

Result<TargetMessage> parse_close(ByteView message) { return parse_target(message, 'C', "Close"); }

void append_describe(Bytes& out, char kind, std::string_view name) {
  append_target(out, 'D', kind, name);
}

void append_close(Bytes& out, char kind, std::string_view name) {
  append_target(out, 'C', kind, name);
}

// ---- Answers pgmux gives itself ---------------------------------------------

void append_parse_complete(Bytes& out) { append_empty(out, '1'); }
void append_bind_complete(Bytes& out) { append_empty(out, '2'); }
void append_close_complete(Bytes& out) { append_empty(out, '3'); }
void append_flush(Bytes& out) { append_empty(out, 'H'); }

Result<std::string_view> parse_command_complete(ByteView message) {
  constexpr std::string_view kWhat = "CommandComplete";
  auto body = open_message(message, 'C', kWhat);
  if (!body) return body.error();
  std::string_view tag;
  if (!body->read_cstring(&tag)) return malformed(kWhat, "tag is missing its terminator");
  if (!body->done()) return malformed(kWhat, "bytes after the tag");
  return tag;
}

}  // namespace pgmux::protocol
