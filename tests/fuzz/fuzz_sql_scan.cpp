// libFuzzer target: the input as the SQL text of a Query or Parse, through
// protocol/sql_scan.h. Checks: every view scan_sql returns lies inside the
// text; may_change_session, the pre-check that lets ordinary queries skip
// scan_sql, never says "no" for text in which scan_sql finds a statement.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "protocol/sql_scan.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using namespace pgmux::protocol;  // NOLINT(google-build-using-namespace)
using pgmux::fuzz::check;

bool inside(std::string_view part, std::string_view whole) {
  if (part.empty()) return true;  // An empty view may point anywhere.
  return part.data() >= whole.data() && part.data() + part.size() <= whole.data() + whole.size();
}

bool has_name(SqlKind kind) {
  switch (kind) {
    case SqlKind::kSet:
    case SqlKind::kSetDefault:
    case SqlKind::kReset:
    case SqlKind::kPrepare:
    case SqlKind::kExecute:
    case SqlKind::kDeallocate:
      return true;
    default:
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy is not needed: libFuzzer's buffer already has exactly
  // `size` bytes, so a read past the text is an ASan error.
  const std::string_view sql(reinterpret_cast<const char*>(data), size);
  const std::vector<SqlStatement> statements = scan_sql(sql);
  for (const SqlStatement& s : statements) {
    check(inside(s.name, sql) && inside(s.value, sql) && inside(s.body, sql));
    if (has_name(s.kind)) check(!s.name.empty());
  }
  if (!statements.empty()) check(may_change_session(sql));
  // The proxy scans the same text again when it replays a Parse; the answer
  // must not depend on anything but the text.
  check(scan_sql(sql).size() == statements.size());
  return 0;
}
