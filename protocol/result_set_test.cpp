#include "protocol/result_set.h"

#include <doctest/doctest.h>

#include <string>

#include "protocol/extended.h"
#include "protocol/sqlstate.h"

namespace pgmux::protocol {
namespace {

ByteView view(const Bytes& b) { return {reinterpret_cast<const uint8_t*>(b.data()), b.size()}; }

TEST_CASE("RowDescription round trip, framed as one message") {
  Bytes out;
  append_row_description(out, {{"database", kTextOid}, {"cl_active", kInt8Oid}, {"", kInt4Oid}});
  const Frame frame = frame_message(view(out), 1 << 20);
  REQUIRE(frame.status == FrameStatus::kComplete);
  CHECK(frame.type == 'T');
  CHECK(frame.size == out.size());
  auto columns = parse_row_description(view(out));
  REQUIRE(columns);
  REQUIRE(columns->size() == 3);
  CHECK((*columns)[0].name == "database");
  CHECK((*columns)[0].type_oid == kTextOid);
  CHECK((*columns)[1].name == "cl_active");
  CHECK((*columns)[1].type_oid == kInt8Oid);
  CHECK((*columns)[2].name.empty());
  CHECK((*columns)[2].type_oid == kInt4Oid);
}

TEST_CASE("RowDescription golden bytes for one text column") {
  Bytes out;
  append_row_description(out, {{"a", kTextOid}});
  const Bytes expected(
      "T\0\0\0\x1a\0\x01"
      "a\0"
      "\0\0\0\0"
      "\0\0"
      "\0\0\0\x19"
      "\xff\xff"
      "\xff\xff\xff\xff"
      "\0\0",
      27);
  CHECK(out == expected);
}

TEST_CASE("RowDescription with no columns, and malformed ones") {
  Bytes out;
  append_row_description(out, {});
  CHECK(parse_row_description(view(out))->empty());
  Bytes cut;
  append_row_description(cut, {{"x", kInt8Oid}});
  cut.pop_back();
  cut[4] = static_cast<char>(cut[4] - 1);
  CHECK(parse_row_description(view(cut)).error().sqlstate == sqlstate::kProtocolViolation);
  Bytes extra;
  append_row_description(extra, {});
  extra.push_back('z');
  extra[4] = static_cast<char>(extra[4] + 1);
  CHECK(!parse_row_description(view(extra)));
  Bytes wrong_type;
  append_command_complete(wrong_type, "SHOW");
  CHECK(!parse_row_description(view(wrong_type)));
}

TEST_CASE("CommandComplete and EmptyQueryResponse round trip") {
  Bytes out;
  append_command_complete(out, "SHOW");
  CHECK(out == Bytes("C\0\0\0\x09SHOW\0", 10));
  auto tag = parse_command_complete(view(out));
  REQUIRE(tag);
  CHECK(*tag == "SHOW");
  Bytes empty;
  append_empty_query_response(empty);
  CHECK(empty == Bytes("I\0\0\0\x04", 5));
  Bytes unterminated("C\0\0\0\x08SHOW", 9);
  CHECK(!parse_command_complete(view(unterminated)));
}

}  // namespace
}  // namespace pgmux::protocol
