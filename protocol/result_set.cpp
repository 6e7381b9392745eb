#include "protocol/result_set.h"

#include <cstring>

#include "protocol/wire.h"

namespace pgmux::protocol {

using namespace wire;  // NOLINT(google-build-using-namespace): internal helpers.

void append_row_description(Bytes& out, const std::vector<ColumnDescription>& columns) {
  assert(columns.size() < 32768);
  const size_t at = begin_message(out, 'T');
  put_u16(out, static_cast<uint16_t>(columns.size()));
  for (const ColumnDescription& column : columns) {
    put_cstring(out, column.name);
    put_i32(out, 0);  // No table.
    put_u16(out, 0);  // No attribute number.
    put_i32(out, column.type_oid);
    put_u16(out, 0xFFFF);  // Type size -1: as the server says for text.
    put_i32(out, -1);      // No type modifier.
    put_u16(out, 0);       // Text format.
  }
  patch_length(out, at);
}

void append_command_complete(Bytes& out, std::string_view tag) {
  const size_t at = begin_message(out, 'C');
  put_cstring(out, tag);
  patch_length(out, at);
}

void append_empty_query_response(Bytes& out) {
  out.push_back('I');
  put_u32(out, 4);
}

namespace {

// The body of a whole message of type `type`, or nothing when the header is
// not that type or the length disagrees with the bytes.
bool body_of(ByteView message, char type, ByteView* body) {
  if (message.size() < 5 || message[0] != static_cast<uint8_t>(type)) return false;
  const uint32_t length = (uint32_t{message[1]} << 24) | (uint32_t{message[2]} << 16) |
                          (uint32_t{message[3]} << 8) | uint32_t{message[4]};
  if (length != message.size() - 1) return false;
  *body = message.subspan(5);
  return true;
}

uint32_t read_be(ByteView bytes, size_t at, size_t width) {
  uint32_t value = 0;
  for (size_t i = 0; i < width; ++i) value = (value << 8) | bytes[at + i];
  return value;
}

}  // namespace

Result<std::vector<ColumnDescription>> parse_row_description(ByteView message) {
  constexpr std::string_view kWhat = "RowDescription";
  ByteView body;
  if (!body_of(message, 'T', &body)) return malformed(kWhat, "bad header");
  if (body.size() < 2) return malformed(kWhat, "the column count is missing");
  const uint32_t count = read_be(body, 0, 2);
  std::vector<ColumnDescription> columns;
  columns.reserve(count);
  size_t pos = 2;
  for (uint32_t i = 0; i < count; ++i) {
    const void* nul = std::memchr(body.data() + pos, 0, body.size() - pos);
    if (nul == nullptr) return malformed(kWhat, "a column name is not terminated");
    const auto length = static_cast<size_t>(static_cast<const uint8_t*>(nul) - body.data()) - pos;
    ColumnDescription column;
    column.name = std::string_view(reinterpret_cast<const char*>(body.data() + pos), length);
    pos += length + 1;
    constexpr size_t kFixed = 4 + 2 + 4 + 2 + 4 + 2;
    if (body.size() - pos < kFixed) return malformed(kWhat, "a column is cut short");
    column.type_oid = static_cast<int32_t>(read_be(body, pos + 6, 4));
    pos += kFixed;
    columns.push_back(column);
  }
  if (pos != body.size()) return malformed(kWhat, "bytes after the last column");
  return columns;
}

}  // namespace pgmux::protocol
