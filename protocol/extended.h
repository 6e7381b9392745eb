// Extended-query messages pgmux rewrites to virtualise named prepared
// statements (PostgreSQL docs 55.2.3 and 55.7): inspectors for Parse, Bind,
// Describe and Close from clients, builders for what pgmux sends instead or
// answers itself. Inspectors take a whole message (header included) unless
// they say otherwise, and return views into it.
#pragma once

#include <cstdint>
#include <string_view>

#include "protocol/frame.h"
#include "protocol/messages.h"
#include "protocol/result.h"

namespace pgmux::protocol {

struct ParseMessage {
  std::string_view name;  // Empty: the unnamed statement.
  std::string_view query;
  uint16_t param_count = 0;
  ByteView param_types;  // param_count * 4 bytes of OIDs, as sent.
};
Result<ParseMessage> parse_parse(ByteView message);  // 'P'
void append_parse(Bytes& out, std::string_view name, std::string_view query, uint16_t param_count,
                  ByteView param_types);

// The start of a Bind ('B'): enough to rename its statement without
// touching the parameters, which may be huge.
struct BindHeader {
  std::string_view portal;
  std::string_view statement;
  size_t rest_offset = 0;  // Where the parameter format codes start in the message.
};
// Works on a PREFIX of the message (the 5-byte header and as much as has
// arrived). Returns kNeedMore (as an Error with empty sqlstate and message
// "need more") if the two names are not complete yet; 08P01 if malformed.
// Use bind_header_complete() to tell the two apart.
Result<BindHeader> parse_bind_header(ByteView prefix);
bool bind_header_complete(ByteView prefix);
// Writes 'B', the length of a Bind whose parameter part (everything from
// rest_offset on in the original) has `rest_size` bytes, and the two names.
// The caller then sends the original rest.
void append_bind_header(Bytes& out, std::string_view portal, std::string_view statement,
                        size_t rest_size);

struct TargetMessage {
  char kind = 0;  // 'S' (statement) or 'P' (portal)
  std::string_view name;
};
Result<TargetMessage> parse_describe(ByteView message);  // 'D'
Result<TargetMessage> parse_close(ByteView message);     // 'C'
void append_describe(Bytes& out, char kind, std::string_view name);
void append_close(Bytes& out, char kind, std::string_view name);

void append_parse_complete(Bytes& out);  // '1'
void append_bind_complete(Bytes& out);   // '2'
void append_close_complete(Bytes& out);  // '3'
void append_flush(Bytes& out);           // 'H'

// CommandComplete ('C'): the tag, e.g. "SELECT 1", "SET", "DISCARD ALL".
Result<std::string_view> parse_command_complete(ByteView message);

}  // namespace pgmux::protocol
