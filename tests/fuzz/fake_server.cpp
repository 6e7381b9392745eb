#include "tests/fuzz/fake_server.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <utility>

#include "protocol/extended.h"
#include "protocol/frame.h"
#include "protocol/messages.h"

namespace pgmux::fuzz {

namespace {

using protocol::ByteView;

// What a fresh backend reports (55.2.7); the first group may change.
constexpr std::array<std::pair<std::string_view, std::string_view>, 10> kReported = {{
    {"application_name", ""},
    {"client_encoding", "UTF8"},
    {"DateStyle", "ISO, MDY"},
    {"IntervalStyle", "postgres"},
    {"TimeZone", "UTC"},
    {"standard_conforming_strings", "on"},
    {"server_version", "15.0"},
    {"integer_datetimes", "on"},
    {"is_superuser", "off"},
    {"session_authorization", "app"},
}};
constexpr size_t kSettable = 6;  // The first six of kReported.
constexpr uint32_t kMaxMessage = 1u << 24;
constexpr size_t kBigRow = 20000;  // More than pgmux's 16 KB buffer block.

void put_u32(std::string& out, uint32_t v) {
  const char bytes[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                         static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(bytes, 4);
}

void put_u16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

void message(std::string& out, char type, std::string_view body) {
  out.push_back(type);
  put_u32(out, static_cast<uint32_t>(body.size() + 4));
  out.append(body);
}

bool contains(std::string_view sql, std::string_view word) {
  return sql.find(word) != std::string_view::npos;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool iequal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// Splits off the first word (letters, digits, '_', '.').
std::string_view take_word(std::string_view& s) {
  s = trim(s);
  size_t n = 0;
  while (n < s.size() &&
         (std::isalnum(static_cast<unsigned char>(s[n])) || s[n] == '_' || s[n] == '.')) {
    ++n;
  }
  std::string_view word = s.substr(0, n);
  s.remove_prefix(n);
  return word;
}

// A NUL-terminated string at `offset` of `body`; false if there is none.
bool c_string(std::string_view body, size_t& offset, std::string_view& out) {
  const size_t end = body.find('\0', offset);
  if (end == std::string_view::npos) return false;
  out = body.substr(offset, end - offset);
  offset = end + 1;
  return true;
}

const std::pair<std::string_view, std::string_view>* reported(std::string_view name) {
  for (size_t i = 0; i < kSettable; ++i) {
    if (iequal(kReported[i].first, name)) return &kReported[i];
  }
  return nullptr;
}

}  // namespace

struct FakeServer::Backend {
  enum class Phase { kStartup, kReady, kCopyIn, kSkipToSync, kClosed };
  std::unique_ptr<Peer> peer;
  Phase phase = Phase::kStartup;
  bool copy_extended = false;
  bool cancel = false;
  bool close_after_ready = false;
  char tx = 'I';
  int32_t pid = 0;
  std::map<std::string, std::string, std::less<>> statements;
  std::map<std::string, std::string, std::less<>> portals;
  std::map<std::string, std::string, std::less<>> params;  // Differences from kReported.

  std::string& out() { return out_; }
  // Queues `out_` on the peer.
  void flush() {
    if (!out_.empty() && peer && !peer->closing()) peer->send(out_);
    out_.clear();
  }
  void close(bool reset) {
    flush();
    phase = Phase::kClosed;
    peer->close(reset);
  }

 private:
  std::string out_;
};

FakeServer::FakeServer(uv_loop_t* loop, LoginMode login, size_t chunk, uint64_t& progress)
    : loop_(loop), login_(login), chunk_(chunk), progress_(progress) {}

FakeServer::~FakeServer() {
  if (!closed()) __builtin_trap();
}

uint16_t FakeServer::start() {
  uv_tcp_init(loop_, &listener_);
  listener_.data = this;
  listener_open_ = true;
  listener_closed_ = false;
  sockaddr_in address{};
  uv_ip4_addr("127.0.0.1", 0, &address);
  if (uv_tcp_bind(&listener_, reinterpret_cast<const sockaddr*>(&address), 0) != 0 ||
      uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, &FakeServer::on_connection) != 0) {
    return 0;
  }
  sockaddr_in bound{};
  int length = sizeof bound;
  uv_tcp_getsockname(&listener_, reinterpret_cast<sockaddr*>(&bound), &length);
  return ntohs(bound.sin_port);
}

void FakeServer::on_connection(uv_stream_t* listener, int status) {
  auto* self = static_cast<FakeServer*>(listener->data);
  ++self->progress_;
  if (status != 0) return;
  auto backend = std::make_unique<Backend>();
  backend->peer = std::make_unique<Peer>(self->loop_, *self, self->chunk_, self->progress_);
  backend->peer->owner = backend.get();
  backend->pid = 4242 + static_cast<int32_t>(self->backends_.size());
  if (uv_accept(listener, backend->peer->stream()) != 0) {
    backend->close(true);
  } else {
    backend->peer->accepted();
  }
  self->backends_.push_back(std::move(backend));
}

size_t FakeServer::pump() {
  size_t written = 0;
  for (auto& b : backends_) written += b->peer->pump();
  return written;
}

void FakeServer::on_peer_data(Peer& peer) {
  auto* b = static_cast<Backend*>(peer.owner);
  process(*b);
  b->flush();
}

void FakeServer::on_peer_eof(Peer& peer) {
  auto* b = static_cast<Backend*>(peer.owner);
  if (b->phase != Backend::Phase::kClosed) b->close(false);
}

void FakeServer::process(Backend& b) {
  std::string& in = b.peer->input();
  size_t offset = 0;
  while (b.phase != Backend::Phase::kClosed) {
    const ByteView bytes(reinterpret_cast<const uint8_t*>(in.data()) + offset, in.size() - offset);
    if (b.phase == Backend::Phase::kStartup) {
      const protocol::Frame frame = protocol::frame_startup(bytes);
      if (frame.status == protocol::FrameStatus::kInvalid) {
        b.close(false);
        break;
      }
      if (!frame.whole_in(bytes)) break;
      const ByteView packet = bytes.first(frame.size);
      offset += frame.size;
      if (!process_startup(b, packet)) break;
      continue;
    }
    const protocol::Frame frame = protocol::frame_message(bytes, kMaxMessage);
    if (frame.status == protocol::FrameStatus::kInvalid) {
      error(b, "08P01", "invalid message length", false);
      b.close(false);
      break;
    }
    if (!frame.whole_in(bytes)) break;
    const std::string_view body(in.data() + offset + protocol::kMessageHeaderSize,
                                frame.size - protocol::kMessageHeaderSize);
    offset += frame.size;
    if (!handle(b, frame.type, body)) break;
  }
  if (b.phase == Backend::Phase::kClosed) {
    in.clear();
  } else {
    in.erase(0, offset);
  }
}

bool FakeServer::process_startup(Backend& b, protocol::ByteView bytes) {
  auto packet = protocol::parse_startup_packet(bytes);
  if (!packet) {
    error(b, "08P01", "invalid startup packet", false);
    b.close(false);
    return false;
  }
  std::string& out = b.out();
  switch (packet->kind) {
    case protocol::StartupKind::kSslRequest:
    case protocol::StartupKind::kGssEncRequest:
      out.push_back('N');
      return true;
    case protocol::StartupKind::kCancelRequest:
      ++cancel_requests_;
      b.cancel = true;
      b.close(false);
      return false;
    case protocol::StartupKind::kStartup:
      break;
  }
  const size_t login = logins_++;
  if (login == 0 && login_ == LoginMode::kFirstRefused) {
    protocol::append_error_response(out, "FATAL", "53300", "sorry, too many clients already");
    b.close(false);
    return false;
  }
  if (login_ == LoginMode::kRejected) {
    protocol::append_error_response(out, "FATAL", "28P01", "password authentication failed");
    b.close(false);
    return false;
  }
  if (login == 0 && login_ == LoginMode::kFirstClosed) {
    b.close(true);
    return false;
  }
  protocol::append_authentication_ok(out);
  for (const auto& [name, value] : kReported) protocol::append_parameter_status(out, name, value);
  protocol::append_backend_key_data(out, b.pid, kServerSecret);
  b.phase = Backend::Phase::kReady;
  protocol::append_ready_for_query(out, 'I');
  return true;
}

void FakeServer::error(Backend& b, std::string_view code, std::string_view text, bool extended) {
  protocol::append_error_response(b.out(), "ERROR", code, text);
  if (b.tx == 'T') b.tx = 'E';
  if (extended) b.phase = Backend::Phase::kSkipToSync;
}

void FakeServer::ready(Backend& b) {
  protocol::append_ready_for_query(b.out(), b.tx);
  if (b.close_after_ready) b.close(false);
}

void FakeServer::set_param(Backend& b, const std::string& name, std::string_view value) {
  const auto* param = reported(name);
  if (param == nullptr) return;
  if (value == param->second) {
    b.params.erase(std::string(param->first));
  } else {
    b.params[std::string(param->first)] = std::string(value);
  }
  protocol::append_parameter_status(b.out(), param->first, value);
}

bool FakeServer::handle(Backend& b, char type, std::string_view body) {
  using Phase = Backend::Phase;
  std::string& out = b.out();
  const ByteView whole(reinterpret_cast<const uint8_t*>(body.data()) - 5, body.size() + 5);
  if (type == 'X') {
    b.close(false);
    return false;
  }
  if (b.phase == Phase::kCopyIn) {
    switch (type) {
      case 'd':
        // A row the server rejects: the COPY ends while the client may
        // still be sending (what PostgreSQL does with a bad row).
        if (!contains(body, "BADROW")) return true;
        protocol::append_error_response(out, "ERROR", "22P02", "invalid input syntax at BADROW");
        if (b.tx == 'T') b.tx = 'E';
        break;
      case 'H':
      case 'S':
        return true;
      case 'c':
        message(out, 'C', std::string_view("COPY 1\0", 7));
        break;
      case 'f':
        protocol::append_error_response(out, "ERROR", "57014", "COPY from stdin failed");
        if (b.tx == 'T') b.tx = 'E';
        break;
      default:
        protocol::append_error_response(out, "ERROR", "08P01", "unexpected message during COPY");
        if (b.tx == 'T') b.tx = 'E';
        break;
    }
    b.phase = b.copy_extended && type != 'c' ? Phase::kSkipToSync : Phase::kReady;
    if (!b.copy_extended) ready(b);
    return b.phase != Phase::kClosed;
  }
  if (b.phase == Phase::kSkipToSync) {
    if (type != 'S') return true;
    b.phase = Phase::kReady;
  }
  switch (type) {
    case 'Q':
      return run_query(b, body.empty() ? body : body.substr(0, body.size() - 1));
    case 'P': {
      auto parse = protocol::parse_parse(whole);
      if (!parse) {
        error(b, "08P01", "invalid Parse", true);
        return true;
      }
      if (contains(parse->query, "BADPARSE")) {
        error(b, "42601", "syntax error at BADPARSE", true);
        return true;
      }
      if (!parse->name.empty() && b.statements.count(parse->name) != 0) {
        error(b, "42P05", "prepared statement already exists", true);
        return true;
      }
      b.statements[std::string(parse->name)] = std::string(parse->query);
      protocol::append_parse_complete(out);
      return true;
    }
    case 'B': {
      auto bind = protocol::parse_bind_header(whole);
      if (!bind) {
        error(b, "08P01", "invalid Bind", true);
        return true;
      }
      auto statement = b.statements.find(bind->statement);
      if (statement == b.statements.end()) {
        error(b, "26000", "prepared statement does not exist", true);
        return true;
      }
      if (contains(statement->second, "BADBIND")) {
        error(b, "22P02", "invalid input syntax at BADBIND", true);
        return true;
      }
      b.portals[std::string(bind->portal)] = statement->second;
      protocol::append_bind_complete(out);
      return true;
    }
    case 'D': {
      auto target = protocol::parse_describe(whole);
      if (!target) {
        error(b, "08P01", "invalid Describe", true);
        return true;
      }
      auto& names = target->kind == 'S' ? b.statements : b.portals;
      auto found = names.find(target->name);
      if (found == names.end()) {
        error(b, target->kind == 'S' ? "26000" : "34000", "does not exist", true);
        return true;
      }
      if (target->kind == 'S') message(out, 't', std::string_view("\0\0", 2));
      if (contains(found->second, "ROWS") || contains(found->second, "BIG")) {
        std::string row;
        put_u16(row, 1);
        row.append("x\0", 2);
        put_u32(row, 0);
        put_u16(row, 0);
        put_u32(row, 25);
        put_u16(row, 0xffff);
        put_u32(row, 0xffffffff);
        put_u16(row, 0);
        message(out, 'T', row);
      } else {
        message(out, 'n', {});
      }
      return true;
    }
    case 'E': {
      size_t offset = 0;
      std::string_view portal;
      if (!c_string(body, offset, portal)) {
        error(b, "08P01", "invalid Execute", true);
        return true;
      }
      auto found = b.portals.find(portal);
      if (found == b.portals.end()) {
        error(b, "34000", "portal does not exist", true);
        return true;
      }
      const std::string query = found->second;
      run(b, query, /*extended=*/true);
      return b.phase != Phase::kClosed;
    }
    case 'C': {
      auto target = protocol::parse_close(whole);
      if (!target) {
        error(b, "08P01", "invalid Close", true);
        return true;
      }
      (target->kind == 'S' ? b.statements : b.portals).erase(std::string(target->name));
      protocol::append_close_complete(out);
      return true;
    }
    case 'S':
      b.portals.erase("");
      ready(b);
      return b.phase != Phase::kClosed;
    case 'H':
      return true;
    case 'F': {
      std::string result;
      put_u32(result, 0xffffffff);
      message(out, 'V', result);
      ready(b);
      return b.phase != Phase::kClosed;
    }
    case 'd':
    case 'c':
    case 'f':
      return true;  // Outside COPY, ignored (as postgres.c does).
    default:
      protocol::append_error_response(out, "FATAL", "08P01", "invalid frontend message type");
      b.close(false);
      return false;
  }
}

bool FakeServer::run_query(Backend& b, std::string_view sql) {
  bool any = false;
  bool ok = true;
  while (ok && b.phase == Backend::Phase::kReady) {
    const size_t end = sql.find(';');
    std::string_view statement = trim(sql.substr(0, end));
    if (!statement.empty()) {
      any = true;
      ok = run(b, statement, /*extended=*/false);
    }
    if (end == std::string_view::npos) break;
    sql.remove_prefix(end + 1);
  }
  if (b.phase == Backend::Phase::kClosed) return false;
  if (b.phase == Backend::Phase::kCopyIn) return true;
  if (!any) message(b.out(), 'I', {});
  ready(b);
  return b.phase != Backend::Phase::kClosed;
}

bool FakeServer::run(Backend& b, std::string_view sql, bool extended) {
  std::string& out = b.out();
  if (contains(sql, "DIE")) {
    b.close(true);
    return false;
  }
  if (contains(sql, "FATAL")) {
    protocol::append_error_response(out, "FATAL", "57P01",
                                    "terminating connection due to administrator command");
    b.close(false);
    return false;
  }
  if (contains(sql, "BYE")) b.close_after_ready = true;
  std::string_view rest = sql;
  const std::string_view word = take_word(rest);
  const bool ends_tx = iequal(word, "COMMIT") || iequal(word, "END") || iequal(word, "ROLLBACK") ||
                       iequal(word, "ABORT");
  if (b.tx == 'E' && !ends_tx) {
    error(b, "25P02", "current transaction is aborted", extended);
    return false;
  }
  if (contains(sql, "ERR")) {
    error(b, "42601", "syntax error at ERR", extended);
    return false;
  }
  if (contains(sql, "NOTICE")) {
    protocol::append_notice_response(out, "NOTICE", "00000", "a notice");
  }
  if (contains(sql, "NOTIFY")) {
    std::string body;
    put_u32(body, static_cast<uint32_t>(b.pid));
    body.append("chan\0payload\0", 13);
    message(out, 'A', body);
  }
  std::string tag(word.empty() ? "OK" : word);
  std::transform(tag.begin(), tag.end(), tag.begin(), [](char c) {
    return static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  });
  if (iequal(word, "BEGIN") || iequal(word, "START")) {
    b.tx = 'T';
  } else if (ends_tx) {
    if (b.tx == 'E') tag = "ROLLBACK";
    b.tx = 'I';
  } else if (iequal(word, "SET")) {
    std::string_view name = take_word(rest);
    if (iequal(name, "SESSION") || iequal(name, "LOCAL")) name = take_word(rest);
    rest = trim(rest);
    if (!rest.empty() && rest.front() == '=') {
      rest.remove_prefix(1);
    } else if (rest.size() >= 2 && iequal(rest.substr(0, 2), "TO")) {
      rest.remove_prefix(2);
    }
    rest = trim(rest);
    if (rest.size() >= 2 && rest.front() == '\'' && rest.back() == '\'') {
      rest = rest.substr(1, rest.size() - 2);
    }
    set_param(b, std::string(name), rest);
  } else if (iequal(word, "RESET") || iequal(word, "DISCARD")) {
    const std::string_view name = take_word(rest);
    const bool all = iequal(name, "ALL");
    if (all) {
      const auto changed = b.params;
      for (const auto& [param, value] : changed) set_param(b, param, reported(param)->second);
    } else if (const auto* param = reported(name)) {
      set_param(b, std::string(param->first), param->second);
    }
    if (iequal(word, "DISCARD") && all) {
      b.statements.clear();
      b.portals.clear();
      tag = "DISCARD ALL";
    }
  } else if (iequal(word, "DEALLOCATE")) {
    std::string_view name = take_word(rest);
    if (iequal(name, "PREPARE")) name = take_word(rest);
    if (iequal(name, "ALL")) {
      b.statements.clear();
    } else if (b.statements.erase(std::string(name)) == 0) {
      error(b, "26000", "prepared statement does not exist", extended);
      return false;
    }
  } else if (iequal(word, "COPY")) {
    if (contains(sql, "STDIN")) {
      message(out, 'G', std::string_view("\0\0\0", 3));
      b.phase = Backend::Phase::kCopyIn;
      b.copy_extended = extended;
      return true;
    }
    message(out, 'H', std::string_view("\0\0\0", 3));
    message(out, 'd', "x\n");
    message(out, 'c', {});
    tag = "COPY 1";
  }
  if (contains(sql, "ROWS") || contains(sql, "BIG")) {
    if (!extended) {
      std::string description;
      put_u16(description, 1);
      description.append("x\0", 2);
      put_u32(description, 0);
      put_u16(description, 0);
      put_u32(description, 25);
      put_u16(description, 0xffff);
      put_u32(description, 0xffffffff);
      put_u16(description, 0);
      message(out, 'T', description);
    }
    const size_t width = contains(sql, "BIG") ? kBigRow : 3;
    std::string row;
    put_u16(row, 1);
    put_u32(row, static_cast<uint32_t>(width));
    row.append(width, 'r');
    message(out, 'D', row);
    if (width != kBigRow) message(out, 'D', row);
    tag = "SELECT 2";
  }
  tag.push_back('\0');
  message(out, 'C', tag);
  return true;
}

void FakeServer::close_all(bool reset) {
  for (auto& b : backends_) {
    if (b->phase != Backend::Phase::kClosed) b->close(reset);
  }
}

void FakeServer::notice_all() {
  for (auto& b : backends_) {
    if (b->phase == Backend::Phase::kStartup || b->phase == Backend::Phase::kClosed) continue;
    protocol::append_notice_response(b->out(), "WARNING", "01000", "an asynchronous notice");
    b->flush();
  }
}

void FakeServer::parameter_status_all() {
  for (auto& b : backends_) {
    if (b->phase == Backend::Phase::kStartup || b->phase == Backend::Phase::kClosed) continue;
    const bool utc = b->params.count("TimeZone") == 0;
    set_param(*b, "TimeZone", utc ? "Europe/Paris" : "UTC");
    b->flush();
  }
}

void FakeServer::terminate_all() {
  for (auto& b : backends_) {
    if (b->phase == Backend::Phase::kClosed) continue;
    protocol::append_error_response(b->out(), "FATAL", "57P01",
                                    "terminating connection due to administrator command");
    b->close(false);
  }
}

size_t FakeServer::open_backends() const {
  size_t n = 0;
  for (const auto& b : backends_) n += b->phase != Backend::Phase::kClosed && !b->cancel;
  return n;
}

void FakeServer::stop() {
  if (listener_open_) {
    listener_open_ = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&listener_), &FakeServer::on_listener_closed);
  }
  close_all(true);
}

void FakeServer::on_listener_closed(uv_handle_t* handle) {
  static_cast<FakeServer*>(handle->data)->listener_closed_ = true;
}

bool FakeServer::closed() const {
  if (!listener_closed_) return false;
  return std::all_of(backends_.begin(), backends_.end(),
                     [](const auto& b) { return b->peer->closed(); });
}

}  // namespace pgmux::fuzz
