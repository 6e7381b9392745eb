#include "protocol/sql_scan.h"

#include <array>
#include <cstddef>
#include <cstdint>

namespace pgmux::protocol {

namespace {

// ---- Characters and keywords -------------------------------------------------

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c; }

// REQUIRES: `keyword` is lower case.
bool iequals(std::string_view s, std::string_view keyword) {
  if (s.size() != keyword.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (lower(s[i]) != keyword[i]) return false;
  }
  return true;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) { return c >= '0' && c <= '9'; }
// PostgreSQL's scan.l: ident_start is [A-Za-z\200-\377_], ident_cont adds
// digits and '$'.
bool is_ident_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
bool is_ident_cont(char c) { return is_ident_start(c) || is_digit(c) || c == '$'; }

// ---- Lexer ---------------------------------------------------------------------

enum class Tok : uint8_t {
  kEnd,
  kWord,         // An unquoted identifier or keyword.
  kQuotedIdent,  // "..." with its quotes.
  kString,       // '...', E'...', $tag$...$tag$ with their quotes.
  kNumber,
  kPunct,  // One character of anything else ($1 included).
  kSemicolon,
};

struct Token {
  Tok type = Tok::kEnd;
  size_t begin = 0;
  size_t end = 0;
  std::string_view text;
};

bool is_keyword(const Token& t, std::string_view keyword) {
  return t.type == Tok::kWord && iequals(t.text, keyword);
}
bool is_punct(const Token& t, char c) { return t.type == Tok::kPunct && t.text[0] == c; }
bool is_ident(const Token& t) { return t.type == Tok::kWord || t.type == Tok::kQuotedIdent; }

// Splits SQL into tokens, skipping whitespace and comments. It recognises
// just enough of PostgreSQL's lexer (scan.l) to never mistake the inside of a
// string, quoted identifier, comment or dollar quote for code. Plain strings
// are read with standard_conforming_strings on (the default since 9.1).
// Unterminated constructs run to the end of the text.
class Lexer {
 public:
  Lexer(std::string_view sql, size_t pos) : sql_(sql), pos_(pos) {}

  Token next() {
    skip_space_and_comments();
    Token t;
    t.begin = pos_;
    if (pos_ >= sql_.size()) {
      pos_ = sql_.size();
      t.begin = pos_;
      return finish(t, Tok::kEnd);
    }
    const char c = sql_[pos_];
    if ((c == 'e' || c == 'E') && at(pos_ + 1) == '\'') {
      pos_ = skip_quoted(pos_ + 2, '\'', /*backslash_escapes=*/true);
      return finish(t, Tok::kString);
    }
    if (is_ident_start(c)) {
      while (pos_ < sql_.size() && is_ident_cont(sql_[pos_])) ++pos_;
      return finish(t, Tok::kWord);
    }
    if (c == '\'') {
      pos_ = skip_quoted(pos_ + 1, '\'', /*backslash_escapes=*/false);
      return finish(t, Tok::kString);
    }
    if (c == '"') {
      pos_ = skip_quoted(pos_ + 1, '"', /*backslash_escapes=*/false);
      return finish(t, Tok::kQuotedIdent);
    }
    if (c == '$' && skip_dollar_quote()) return finish(t, Tok::kString);
    if (is_digit(c) || (c == '.' && is_digit(at(pos_ + 1)))) {
      while (pos_ < sql_.size() && (is_ident_cont(sql_[pos_]) || sql_[pos_] == '.')) ++pos_;
      return finish(t, Tok::kNumber);
    }
    ++pos_;
    return finish(t, c == ';' ? Tok::kSemicolon : Tok::kPunct);
  }

 private:
  char at(size_t i) const { return i < sql_.size() ? sql_[i] : '\0'; }

  Token& finish(Token& t, Tok type) {
    t.type = type;
    t.end = pos_;
    t.text = sql_.substr(t.begin, t.end - t.begin);
    return t;
  }

  void skip_space_and_comments() {
    while (pos_ < sql_.size()) {
      const char c = sql_[pos_];
      if (is_space(c)) {
        ++pos_;
      } else if (c == '-' && at(pos_ + 1) == '-') {
        const size_t eol = sql_.find('\n', pos_ + 2);
        pos_ = eol == std::string_view::npos ? sql_.size() : eol + 1;
      } else if (c == '/' && at(pos_ + 1) == '*') {
        // Block comments nest in PostgreSQL, unlike in the SQL standard.
        size_t depth = 1;
        pos_ += 2;
        while (pos_ < sql_.size() && depth > 0) {
          if (sql_[pos_] == '/' && at(pos_ + 1) == '*') {
            ++depth;
            pos_ += 2;
          } else if (sql_[pos_] == '*' && at(pos_ + 1) == '/') {
            --depth;
            pos_ += 2;
          } else {
            ++pos_;
          }
        }
      } else {
        return;
      }
    }
  }

  // Returns the position after the closing quote. A doubled quote stands for
  // itself; in E'' strings a backslash escapes the next character.
  size_t skip_quoted(size_t i, char quote, bool backslash_escapes) const {
    while (i < sql_.size()) {
      const char c = sql_[i];
      if (backslash_escapes && c == '\\') {
        i += 2;
      } else if (c == quote) {
        if (at(i + 1) != quote) return i + 1;
        i += 2;
      } else {
        ++i;
      }
    }
    return sql_.size();
  }

  // At a '$': a dollar quote is $$ or $tag$ where the tag is an identifier
  // without '$'. Anything else ($1, a lone $) is not one.
  bool skip_dollar_quote() {
    size_t i = pos_ + 1;
    if (i < sql_.size() && is_ident_start(sql_[i])) {
      while (i < sql_.size() && sql_[i] != '$' && is_ident_cont(sql_[i])) ++i;
    }
    if (at(i) != '$') return false;
    const std::string_view delimiter = sql_.substr(pos_, i + 1 - pos_);
    const size_t close = sql_.find(delimiter, i + 1);
    pos_ = close == std::string_view::npos ? sql_.size() : close + delimiter.size();
    return true;
  }

  std::string_view sql_;
  size_t pos_;
};

// A lexer with one token of lookahead over [begin, end) of the text.
class Cursor {
 public:
  Cursor(std::string_view sql, size_t begin, size_t end)
      : lexer_(sql.substr(0, end), begin), current_(lexer_.next()) {}

  const Token& peek() const { return current_; }
  Token take() {
    Token t = current_;
    current_ = lexer_.next();
    return t;
  }
  bool at(std::string_view keyword) const { return is_keyword(current_, keyword); }
  bool accept(std::string_view keyword) {
    if (!at(keyword)) return false;
    take();
    return true;
  }
  // The keyword after the current token.
  bool next_is(std::string_view keyword) const {
    Cursor look = *this;
    look.take();
    return look.at(keyword);
  }

 private:
  Lexer lexer_;
  Token current_;
};

// ---- One statement -------------------------------------------------------------

// What a pass over one whole statement learned about it.
struct StatementFacts {
  size_t begin = 0;  // The first token.
  size_t end = 0;    // The end of the last token: trailing space and comments excluded.
  Token first;
  std::string_view advisory_call;  // The session-level advisory lock function called, if any.
  bool on_commit_drop = false;
  bool into_temp = false;  // ... INTO TEMP[ORARY] [TABLE] name, as in SELECT INTO.
};

bool is_advisory_lock_name(const Token& t) {
  static constexpr std::array<std::string_view, 4> kNames = {
      "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock",
      "pg_try_advisory_lock_shared"};
  for (std::string_view name : kNames) {
    if (t.type == Tok::kWord && iequals(t.text, name)) return true;
    // A quoted identifier is case-sensitive.
    if (t.type == Tok::kQuotedIdent && t.text.size() == name.size() + 2 &&
        t.text.substr(1, name.size()) == name) {
      return true;
    }
  }
  return false;
}

// Words that may follow SELECT ... INTO TEMP when TEMP is a column or table
// called "temp" rather than the keyword (SELECT a INTO temp FROM t).
bool ends_select_into_target(const Token& t) {
  static constexpr std::array<std::string_view, 13> kWords = {
      "from",   "where", "group", "having", "window", "union", "intersect",
      "except", "order", "limit", "offset", "fetch",  "for"};
  for (std::string_view word : kWords) {
    if (is_keyword(t, word)) return true;
  }
  return false;
}

// Sets `facts` for the statement starting at the lexer's position and leaves
// the lexer after its ';' (or at the end). Returns false when the text has
// ended; `count` tells whether the statement had any token.
bool read_statement(Lexer& lexer, StatementFacts& facts, size_t& count) {
  Token prev2;
  Token prev1;
  count = 0;
  for (;;) {
    const Token t = lexer.next();
    if (t.type == Tok::kEnd) return false;
    if (t.type == Tok::kSemicolon) return true;
    if (count++ == 0) {
      facts.first = t;
      facts.begin = t.begin;
    }
    facts.end = t.end;
    if (is_punct(t, '(') && facts.advisory_call.empty() && is_advisory_lock_name(prev1)) {
      facts.advisory_call = prev1.text;
    }
    if (is_keyword(t, "drop") && is_keyword(prev1, "commit") && is_keyword(prev2, "on")) {
      facts.on_commit_drop = true;
    }
    if (is_keyword(prev2, "into") &&
        (is_keyword(prev1, "temp") || is_keyword(prev1, "temporary")) && is_ident(t) &&
        !ends_select_into_target(t)) {
      facts.into_temp = true;
    }
    prev2 = prev1;
    prev1 = t;
  }
}

class Classifier {
 public:
  Classifier(std::string_view sql, const StatementFacts& facts, std::vector<SqlStatement>& out)
      : sql_(sql), facts_(facts), c_(sql, facts.begin, facts.end), out_(out) {}

  void run() {
    const Token& first = facts_.first;
    if (is_keyword(first, "set")) {
      set();
    } else if (is_keyword(first, "reset")) {
      reset();
    } else if (is_keyword(first, "prepare")) {
      prepare();
    } else if (is_keyword(first, "execute")) {
      c_.take();
      if (is_ident(c_.peek())) emit(SqlKind::kExecute, c_.take().text);
    } else if (is_keyword(first, "deallocate")) {
      deallocate();
    } else if (is_keyword(first, "discard")) {
      discard();
    } else if (is_keyword(first, "listen")) {
      c_.take();
      if (is_ident(c_.peek())) emit(SqlKind::kListen, c_.take().text);
    } else if (is_keyword(first, "unlisten")) {
      c_.take();
      if (is_ident(c_.peek()) || is_punct(c_.peek(), '*')) emit(SqlKind::kUnlisten, c_.take().text);
    } else if (is_keyword(first, "load")) {
      c_.take();
      emit(SqlKind::kLoad, c_.peek().text);
    } else if (is_keyword(first, "create")) {
      create();
    } else if (is_keyword(first, "declare")) {
      declare();
    } else if (is_keyword(first, "select") || is_keyword(first, "with") || is_punct(first, '(')) {
      if (facts_.into_temp && !facts_.on_commit_drop) emit(SqlKind::kCreateTemp, {});
    }
    if (!facts_.advisory_call.empty()) emit(SqlKind::kAdvisoryLock, facts_.advisory_call);
  }

 private:
  void emit(SqlKind kind, std::string_view name, std::string_view value = {},
            std::string_view body = {}) {
    out_.push_back(SqlStatement{kind, name, value, body});
  }

  // The text from the current token to the end of the statement.
  std::string_view rest() const {
    if (c_.peek().type == Tok::kEnd) return {};
    return sql_.substr(c_.peek().begin, facts_.end - c_.peek().begin);
  }

  // name ('.' name)*, as written.
  std::string_view take_qualified_name() {
    if (!is_ident(c_.peek())) return {};
    const Token first = c_.take();
    size_t end = first.end;
    while (is_punct(c_.peek(), '.')) {
      Cursor save = c_;
      c_.take();
      if (!is_ident(c_.peek())) {
        c_ = save;
        break;
      }
      end = c_.take().end;
    }
    return sql_.substr(first.begin, end - first.begin);
  }

  // The value after SET name {=|TO}, or after SET TIME ZONE and the like.
  void set_value(std::string_view name, bool local_means_default) {
    const std::string_view value = rest();
    if (value.empty()) return;
    if (iequals(value, "default") || (local_means_default && iequals(value, "local"))) {
      emit(SqlKind::kSetDefault, name);
    } else {
      emit(SqlKind::kSet, name, value);
    }
  }

  // PostgreSQL docs, SET and gram.y's set_rest_more.
  void set() {
    c_.take();
    if (c_.at("local")) return;  // Ends with the transaction.
    if (c_.at("session")) {
      if (c_.next_is("authorization") || c_.next_is("characteristics")) {
        emit(SqlKind::kSetUntrackable, {});
        return;
      }
      Cursor look = c_;
      look.take();
      // SESSION is the scope unless it is itself the name being set.
      if (!is_punct(look.peek(), '=') && !look.at("to")) c_ = look;
    }
    if (c_.at("transaction") || c_.at("constraints")) return;  // Transaction-scoped.
    if (c_.at("role")) {
      emit(SqlKind::kSetUntrackable, {});
      return;
    }
    if (c_.at("time") && c_.next_is("zone")) {
      c_.take();
      c_.take();
      set_value("TimeZone", /*local_means_default=*/true);
      return;
    }
    if (c_.at("names")) {
      c_.take();
      if (rest().empty()) {
        emit(SqlKind::kSetDefault, "client_encoding");
      } else {
        set_value("client_encoding", false);
      }
      return;
    }
    if (c_.at("schema")) {
      c_.take();
      set_value("search_path", false);
      return;
    }
    if (c_.at("xml") && c_.next_is("option")) {
      c_.take();
      c_.take();
      set_value("xmloption", false);
      return;
    }
    const std::string_view name = take_qualified_name();
    if (name.empty()) return;
    if (iequals(name, "session_authorization") || iequals(name, "role")) {
      emit(SqlKind::kSetUntrackable, {});
      return;
    }
    if (is_punct(c_.peek(), '=') || c_.at("to")) {
      c_.take();
      set_value(name, false);
    } else if (c_.at("from") && c_.next_is("current")) {
      emit(SqlKind::kSetUntrackable, name);
    }
  }

  void reset() {
    c_.take();
    if (c_.at("all")) {
      emit(SqlKind::kResetAll, {});
    } else if (c_.at("time") && c_.next_is("zone")) {
      emit(SqlKind::kReset, "TimeZone");
    } else if ((c_.at("session") && c_.next_is("authorization")) || c_.at("role")) {
      emit(SqlKind::kSetUntrackable, {});
    } else if (c_.at("transaction")) {
      return;  // RESET TRANSACTION ISOLATION LEVEL: transaction-scoped.
    } else {
      const std::string_view name = take_qualified_name();
      if (name.empty()) return;
      if (iequals(name, "session_authorization")) {
        emit(SqlKind::kSetUntrackable, {});
      } else {
        emit(SqlKind::kReset, name);
      }
    }
  }

  void prepare() {
    c_.take();
    // PREPARE TRANSACTION 'gid' is two-phase commit, not a statement.
    if (c_.at("transaction")) {
      Cursor look = c_;
      look.take();
      if (look.peek().type == Tok::kString) return;
    }
    if (!is_ident(c_.peek())) return;
    const std::string_view name = c_.take().text;
    if (is_punct(c_.peek(), '(')) {
      size_t depth = 0;
      do {
        const Token t = c_.take();
        if (is_punct(t, '(')) ++depth;
        if (is_punct(t, ')')) --depth;
      } while (depth > 0 && c_.peek().type != Tok::kEnd);
    }
    if (!c_.accept("as")) return;
    const std::string_view body = rest();
    if (!body.empty()) emit(SqlKind::kPrepare, name, {}, body);
  }

  void deallocate() {
    c_.take();
    if (c_.at("prepare")) {
      Cursor look = c_;
      look.take();
      if (is_ident(look.peek())) c_ = look;  // Else a statement called "prepare".
    }
    if (c_.at("all")) {
      emit(SqlKind::kDeallocateAll, {});
    } else if (is_ident(c_.peek())) {
      emit(SqlKind::kDeallocate, c_.peek().text);
    }
  }

  void discard() {
    c_.take();
    if (c_.at("all")) {
      emit(SqlKind::kDiscardAll, {});
    } else if (c_.at("plans") || c_.at("sequences") || c_.at("temp") || c_.at("temporary")) {
      emit(SqlKind::kDiscardOther, c_.peek().text);
    }
  }

  // CREATE [OR REPLACE] [GLOBAL|LOCAL] {TEMP|TEMPORARY} [RECURSIVE] {TABLE|VIEW|SEQUENCE}
  // [IF NOT EXISTS] name, or the same without TEMP into the pg_temp schema.
  void create() {
    c_.take();
    if (c_.accept("or")) c_.accept("replace");
    if (c_.at("global") || c_.at("local")) c_.take();
    const bool temp = c_.accept("temp") || c_.accept("temporary");
    c_.accept("recursive");
    if (!c_.accept("table") && !c_.accept("view") && !c_.accept("sequence")) return;
    if (c_.at("if") && c_.next_is("not")) {
      c_.take();
      c_.take();
      c_.accept("exists");
    }
    const Token schema = c_.peek();
    const std::string_view name = take_qualified_name();
    const bool in_pg_temp = name.size() > schema.text.size() &&
                            (is_temp_schema(schema) || schema.text == "\"pg_temp\"");
    if ((temp || in_pg_temp) && !facts_.on_commit_drop) emit(SqlKind::kCreateTemp, name);
  }

  // pg_temp, or a backend's own pg_temp_N.
  static bool is_temp_schema(const Token& t) {
    if (t.type != Tok::kWord || t.text.size() < 7) return false;
    if (!iequals(t.text.substr(0, 7), "pg_temp")) return false;
    return t.text.size() == 7 || t.text[7] == '_';
  }

  // DECLARE name [BINARY] [ASENSITIVE|INSENSITIVE] [[NO] SCROLL] CURSOR
  // [{WITH|WITHOUT} HOLD] FOR query: only look before FOR, so a query's own
  // WITH cannot be mistaken for the option.
  void declare() {
    c_.take();
    if (!is_ident(c_.peek())) return;
    const std::string_view name = c_.take().text;
    while (c_.peek().type != Tok::kEnd && !c_.at("for")) {
      if (c_.accept("with")) {
        if (c_.at("hold")) {
          emit(SqlKind::kDeclareWithHold, name);
          return;
        }
      } else {
        c_.take();
      }
    }
  }

  std::string_view sql_;
  const StatementFacts& facts_;
  Cursor c_;
  std::vector<SqlStatement>& out_;
};

}  // namespace

std::vector<SqlStatement> scan_sql(std::string_view sql, size_t* statements) {
  std::vector<SqlStatement> out;
  Lexer lexer(sql, 0);
  size_t non_empty = 0;
  // Each statement is lexed once to find its end and facts, and the few that
  // start with a keyword of interest a second time from their start: linear.
  for (;;) {
    StatementFacts facts;
    size_t count = 0;
    const bool more = read_statement(lexer, facts, count);
    if (count > 0) {
      ++non_empty;
      Classifier(sql, facts, out).run();
    }
    if (!more) break;
  }
  if (statements != nullptr) *statements = non_empty;
  return out;
}

bool may_change_session(std::string_view sql) {
  // Every keyword scan_sql reacts to contains one of these (RESET contains
  // "set", UNLISTEN "listen", pg_temp "temp", the lock functions "advisory").
  // One pass over the text; at each byte only the needles starting with that
  // letter (at most two) are compared, so the cost is near O(n) for ordinary
  // text. `c | 0x20` equals a lower-case letter only for that letter in
  // either case, which makes the comparison case-insensitive.
  struct Needles {
    std::string_view first, second;
  };
  static constexpr std::array<Needles, 26> kByLetter = [] {
    std::array<Needles, 26> by{};
    by['a' - 'a'] = {"advisory", {}};
    by['d' - 'a'] = {"deallocate", "discard"};
    by['e' - 'a'] = {"execute", {}};
    by['h' - 'a'] = {"hold", {}};
    by['l' - 'a'] = {"listen", "load"};
    by['p' - 'a'] = {"prepare", {}};
    by['s' - 'a'] = {"set", {}};
    by['t' - 'a'] = {"temp", {}};
    return by;
  }();
  const size_t n = sql.size();
  auto matches = [&](size_t i, std::string_view needle) {
    if (needle.empty() || n - i < needle.size()) return false;
    size_t k = 1;
    while (k < needle.size() && static_cast<char>(sql[i + k] | 0x20) == needle[k]) ++k;
    return k == needle.size();
  };
  for (size_t i = 0; i < n; ++i) {
    const auto c = static_cast<char>(sql[i] | 0x20);
    if (c < 'a' || c > 'z') continue;
    const Needles& needles = kByLetter[static_cast<size_t>(c - 'a')];
    if (needles.first.empty()) continue;
    if (matches(i, needles.first) || matches(i, needles.second)) return true;
  }
  return false;
}

}  // namespace pgmux::protocol
