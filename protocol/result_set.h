// Builders and inspectors for the messages of a query's result, as the
// admin console sends them: RowDescription, DataRow (messages.h),
// CommandComplete, EmptyQueryResponse. Every column pgmux describes is in
// text format; its type OID tells a client how to read the text.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "protocol/messages.h"
#include "protocol/result.h"

namespace pgmux::protocol {

// Type OIDs from PostgreSQL's pg_type.dat.
inline constexpr int32_t kInt4Oid = 23;
inline constexpr int32_t kInt8Oid = 20;
inline constexpr int32_t kTextOid = 25;

struct ColumnDescription {
  std::string_view name;
  int32_t type_oid = kTextOid;
};

// RowDescription ('T'): every column in text format (format code 0), with no
// table (OID 0, attribute 0), a type size of -1 and a modifier of -1.
// REQUIRES: fewer than 32768 columns; names hold no NUL.
void append_row_description(Bytes& out, const std::vector<ColumnDescription>& columns);
// CommandComplete ('C') with `tag`, e.g. "SHOW" or "SET".
void append_command_complete(Bytes& out, std::string_view tag);
void append_empty_query_response(Bytes& out);  // 'I'

// The columns of a RowDescription; the names are views into `message`.
Result<std::vector<ColumnDescription>> parse_row_description(ByteView message);
// parse_command_complete is in extended.h.

}  // namespace pgmux::protocol
