// A cheap scan of SQL text for the few statements that change session state
// in ways a transaction pooler must know about. Not a parser: it splits on
// semicolons outside quotes, comments and dollar quotes, and looks at each
// statement's leading keywords. Linear in the text, no allocation beyond the
// returned vector (which stays empty for ordinary statements).
#pragma once

#include <string_view>
#include <vector>

namespace pgmux::protocol {

enum class SqlKind {
  kSet,              // SET [SESSION] name {=|TO} value   (name, value)
  kSetDefault,       // SET [SESSION] name {=|TO} DEFAULT (name)
  kReset,            // RESET name                        (name)
  kResetAll,         // RESET ALL
  kSetUntrackable,   // SET ... that cannot be tracked: SET SESSION AUTHORIZATION,
                     // SET ROLE, SET name FROM CURRENT (SET TRANSACTION and SET
                     // CONSTRAINTS end with the transaction: not reported)
  kPrepare,          // PREPARE name [(types)] AS body    (name, body)
  kExecute,          // EXECUTE name [(args)]             (name)
  kDeallocate,       // DEALLOCATE [PREPARE] name         (name)
  kDeallocateAll,    // DEALLOCATE [PREPARE] ALL
  kDiscardAll,       // DISCARD ALL
  kDiscardOther,     // DISCARD PLANS | SEQUENCES | TEMP | TEMPORARY
  kListen,           // LISTEN channel
  kUnlisten,         // UNLISTEN ...
  kAdvisoryLock,     // a call of pg_advisory_lock / pg_advisory_lock_shared /
                     // pg_try_advisory_lock(_shared) (session level; the
                     // _xact_ variants are not reported)
  kCreateTemp,       // CREATE [GLOBAL|LOCAL] {TEMP|TEMPORARY} TABLE|VIEW|SEQUENCE
                     // without ON COMMIT DROP
  kDeclareWithHold,  // DECLARE ... WITH HOLD ...
  kLoad,             // LOAD 'library'
};

struct SqlStatement {
  SqlKind kind;
  std::string_view name;   // Lower-cased? No: as written; compare case-insensitively.
  std::string_view value;  // kSet: the value text as written (quotes kept), trimmed.
  std::string_view body;   // kPrepare: the statement after AS.
};

// Statements that matter, in order. SET LOCAL is not reported (it ends with
// the transaction). Quoted identifiers keep their quotes in `name`.
// `statements`, if given, gets the number of statements in `sql`, whether
// they matter or not (empty ones between semicolons do not count).
std::vector<SqlStatement> scan_sql(std::string_view sql, size_t* statements = nullptr);

// True when `sql` might contain one of the above: a fast pre-check (a few
// keyword searches) so ordinary queries skip scan_sql entirely.
bool may_change_session(std::string_view sql);

}  // namespace pgmux::protocol
