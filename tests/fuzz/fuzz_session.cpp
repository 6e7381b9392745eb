// Stateful libFuzzer target over the client side of pgmux: a fuzzed client
// byte stream goes through a real proxy::Proxy (login, relay, statement
// virtualisation, session tracking, pooling) to a scripted PostgreSQL
// (fake_server.h), all on one libuv loop over loopback sockets inside this
// process. The state machines are fuzzed, not only the parsers.
//
// Build: cmake -DCMAKE_CXX_COMPILER=clang++ -DPGMUX_FUZZ=ON, target fuzz_session;
// run:   fuzz_session tests/fuzz/corpus/session (a file argument replays it).
//
// Input (tests/fuzz/make_session_seeds.py writes examples):
//   byte 0  bit 0    raw: client A sends no StartupMessage of its own
//           bit 1    client A's startup carries options (-c settings)
//           bit 2    client A's startup carries application_name
//           bits 3-4 ending: 0 Terminate + FIN, 1 RST, 2 FIN, 3 pgmux stops first
//           bit 5    session_pinning = refuse
//           bits 6-7 max_server_connections - 1
//   byte 1  bits 0-1 fake server login (FakeServer::LoginMode)
//           bits 2-4 fake server write chunk; bits 5-7 client write chunk (kChunks)
//   byte 2  bits 0-1 max_prepared_statements - 1; bits 2-3 max_pinned_server_connections
//           bit 4    client A logs in to the admin console (database pgbouncer;
//                    "app" is in admin_users) instead of the pool
//   then records, each an op byte:
//     op & 3 == 0  client A sends the next u16 (big-endian) length of bytes
//     op & 3 == 1  client B (connected and logged in on first use) sends them
//     op & 3 == 3  client A sends them, and the next record's bytes follow
//                  before the loop runs (one TCP segment)
//     op & 3 == 2  an event, (op >> 2) % 10: see Session::event()
//   After each record the loop runs until nothing more can happen.
//
// Checked: no crash, leak or sanitizer report; the loop closes cleanly
// (every handle closed); the pool's counts agree with the upstream budget
// and with the connections the fake server sees; frames pgmux sends clients
// are well formed, never carry the server's cancel key, and nothing but
// errors follows a FATAL.
#include <poll.h>
#include <uv.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "protocol/frame.h"
#include "protocol/messages.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/proxy.h"
#include "tests/fuzz/fake_peer.h"
#include "tests/fuzz/fake_server.h"

namespace pgmux::fuzz {
namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

constexpr std::array<size_t, 8> kChunks = {0, 1, 2, 3, 7, 64, 1000, 0};
// Loop turns in which neither fake side did anything, before a settle
// counts as a livelock of pgmux's own making.
constexpr size_t kMaxQuietTurns = 10000;
constexpr size_t kMaxTurns = 200000;

// A fake client of pgmux. Checks what pgmux sends it.
class FakeClient final : public PeerEvents {
 public:
  FakeClient(uv_loop_t* loop, size_t chunk, uint64_t& progress, bool checked)
      : peer_(std::make_unique<Peer>(loop, *this, chunk, progress)), checked_(checked) {}

  Peer& peer() { return *peer_; }
  bool has_key() const { return has_key_; }
  int32_t key_pid() const { return key_pid_; }
  int32_t key_secret() const { return key_secret_; }
  // pgmux closed the connection (not us).
  bool closed_by_proxy() const { return closed_by_proxy_; }

 private:
  void on_peer_data(Peer& peer) override {
    std::string& in = peer.input();
    if (!checked_) {
      in.clear();
      return;
    }
    size_t offset = 0;
    while (in.size() - offset >= protocol::kMessageHeaderSize) {
      const auto* p = reinterpret_cast<const uint8_t*>(in.data()) + offset;
      const char type = static_cast<char>(p[0]);
      const uint32_t length = protocol::read_u32(p + 1);
      check(length >= 4);  // pgmux frames everything it sends.
      if (in.size() - offset - 1 < length) break;
      const protocol::ByteView message(p, length + 1);
      offset += length + 1;
      if (first_) {
        // The login ends in AuthenticationOk or an error.
        check(type == 'R' || type == 'E');
        first_ = false;
      }
      // After a FATAL, only errors (pgmux's own after a server's) and notices.
      if (after_fatal_) check(type == 'E' || type == 'N');
      if (type == 'K') {
        auto key = protocol::parse_backend_key_data(message);
        check(key.ok());
        check(key->secret != kServerSecret);  // Never the server's key.
        has_key_ = true;
        key_pid_ = key->pid;
        key_secret_ = key->secret;
      } else if (type == 'E') {
        auto fields = protocol::parse_error_response(message);
        if (fields && fields->severity == "FATAL") after_fatal_ = true;
      }
    }
    in.erase(0, offset);
  }

  void on_peer_eof(Peer& peer) override {
    closed_by_proxy_ = true;
    peer.close(false);
  }

  std::unique_ptr<Peer> peer_;
  bool checked_;
  bool first_ = true;
  bool after_fatal_ = false;
  bool has_key_ = false;
  bool closed_by_proxy_ = false;
  int32_t key_pid_ = 0;
  int32_t key_secret_ = 0;
};

struct Header {
  bool raw = false;
  bool options = false;
  bool application_name = false;
  int ending = 0;
  bool refuse = false;
  uint32_t max_servers = 1;
  FakeServer::LoginMode login = FakeServer::LoginMode::kOk;
  size_t server_chunk = 0;
  size_t client_chunk = 0;
  uint32_t max_prepared = 1;
  uint32_t max_pinned = 0;
  bool admin = false;
};

Header decode_header(const uint8_t* data) {
  Header h;
  h.raw = (data[0] & 1) != 0;
  h.options = (data[0] & 2) != 0;
  h.application_name = (data[0] & 4) != 0;
  h.ending = (data[0] >> 3) & 3;
  h.refuse = (data[0] & 0x20) != 0;
  h.max_servers = 1u + (data[0] >> 6);
  h.login = static_cast<FakeServer::LoginMode>(data[1] & 3);
  h.server_chunk = kChunks[(data[1] >> 2) & 7];
  h.client_chunk = kChunks[(data[1] >> 5) & 7];
  h.max_prepared = 1u + (data[2] & 3);
  h.max_pinned = std::min<uint32_t>((data[2] >> 2) & 3, h.max_servers);
  h.admin = (data[2] & 0x10) != 0;
  return h;
}

class Session {
 public:
  explicit Session(const Header& header) : header_(header) { check(uv_loop_init(&loop_) == 0); }

  void run(const uint8_t* data, size_t size);

 private:
  config::Config make_config(uint16_t server_port) const;
  FakeClient* add_client(bool raw, bool options, bool application_name, bool admin = false);
  void event(int which);
  size_t pump();
  bool loop_quiet();
  void settle();
  void check_invariants();
  void finish();

  Header header_;
  uv_loop_t loop_{};
  uint64_t progress_ = 0;
  std::unique_ptr<FakeServer> server_;
  std::unique_ptr<proxy::Proxy> proxy_;
  std::vector<std::unique_ptr<FakeClient>> clients_;
  FakeClient* a_ = nullptr;
  FakeClient* b_ = nullptr;
};

config::Config Session::make_config(uint16_t server_port) const {
  config::Config config;
  config.listen_host = "127.0.0.1";
  config.listen_port = 0;
  config.auth_type = config::AuthType::kTrust;
  config.max_server_connections = header_.max_servers;
  config.min_server_connections = 0;
  config.max_prepared_statements = header_.max_prepared;
  config.max_pinned_server_connections = header_.max_pinned;
  config.session_pinning =
      header_.refuse ? config::SessionPinning::kRefuse : config::SessionPinning::kPin;
  config.log_level = "off";
  config.admin_users = {"app"};
  // Small enough that a streamed message is exercised, large enough for
  // every message the fake server sends.
  config.max_message_size = 64 * 1024;
  config::Database database;
  database.name = "app";
  database.upstream.host = "127.0.0.1";
  database.upstream.port = server_port;
  database.upstream.user = "app";
  database.upstream.dbname = "app";
  database.upstream.sslmode = config::SslMode::kDisable;
  config.databases.push_back(database);
  check(config::validate(config).ok());
  return config;
}

FakeClient* Session::add_client(bool raw, bool options, bool application_name, bool admin) {
  clients_.push_back(std::make_unique<FakeClient>(&loop_, header_.client_chunk, progress_, !raw));
  FakeClient* client = clients_.back().get();
  client->peer().connect(proxy_->port());
  if (!raw) {
    std::vector<std::pair<std::string, std::string>> params = {
        {"user", "app"}, {"database", admin ? "pgbouncer" : "app"}};
    if (options) params.emplace_back("options", "-c search_path=s1 -c work_mem=64MB -X");
    if (application_name) params.emplace_back("application_name", "fuzz");
    protocol::Bytes startup;
    protocol::append_startup_message(startup, params);
    client->peer().send(startup);
  }
  return client;
}

void Session::event(int which) {
  switch (which) {
    case 0:
      a_->peer().close(/*reset=*/true);
      break;
    case 1:
      a_->peer().close(/*reset=*/false);
      break;
    case 2:
      if (b_ != nullptr) b_->peer().close(/*reset=*/false);
      break;
    case 3:
      server_->close_all(/*reset=*/true);
      break;
    case 4:
      server_->close_all(/*reset=*/false);
      break;
    case 5:
      server_->notice_all();
      break;
    case 6:
      server_->parameter_status_all();
      break;
    case 7:
      server_->terminate_all();
      break;
    case 8: {
      // A CancelRequest with client A's key (or a wrong one) on a new connection.
      FakeClient* cancel = add_client(/*raw=*/true, false, false);
      protocol::Bytes request;
      protocol::append_cancel_request(request, a_->has_key() ? a_->key_pid() : 1,
                                      a_->has_key() ? a_->key_secret() : 7);
      cancel->peer().send(request);
      break;
    }
    default: {
      // Client A says goodbye and a new client A logs in: servers, their
      // prepared statements and session state pass to another client.
      protocol::Bytes terminate;
      protocol::append_terminate(terminate);
      a_->peer().send(terminate);
      settle();
      a_->peer().close(/*reset=*/false);
      a_ = add_client(/*raw=*/false, header_.options, header_.application_name, header_.admin);
      break;
    }
  }
}

size_t Session::pump() {
  size_t written = server_->pump();
  for (auto& client : clients_) written += client->peer().pump();
  return written;
}

bool Session::loop_quiet() {
  // Nothing due: no pending callbacks, closing handles or expired timers...
  if (uv_backend_timeout(&loop_) == 0) return false;
  // ...no watcher waiting to be added to epoll (libuv 1.44 keeps them in a
  // queue until the next poll; an empty queue points at itself)...
  if (loop_.watcher_queue[0] != static_cast<void*>(&loop_.watcher_queue)) return false;
  // ...and no descriptor ready. The epoll descriptor polls readable when
  // any registered descriptor is.
  pollfd fd{uv_backend_fd(&loop_), POLLIN, 0};
  return poll(&fd, 1, 0) == 0;
}

void Session::settle() {
  size_t quiet_turns = 0;
  for (size_t turn = 0;; ++turn) {
    check(turn < kMaxTurns);
    const size_t written = pump();
    const uint64_t before = progress_;
    uv_run(&loop_, UV_RUN_NOWAIT);
    if (written != 0 || progress_ != before) {
      quiet_turns = 0;
      continue;
    }
    if (loop_quiet()) return;
    // pgmux keeps the loop busy on its own.
    check(++quiet_turns < kMaxQuietTurns);
  }
}

void Session::check_invariants() {
  proxy::Pool* pool = proxy_->find_pool("app");
  check(pool != nullptr);
  const size_t servers =
      pool->idle_count() + pool->checking_count() + pool->active_count() + pool->opening_count();
  check(servers <= header_.max_servers);
  check(pool->upstream().open() == servers);
  // Every backend the fake server holds is one pgmux counts.
  check(server_->open_backends() <= servers);
  size_t clients = 0;
  for (auto& client : clients_) clients += !client->closed_by_proxy();
  // Each waiting client holds no server, each active server one client.
  check(pool->waiting_count() + pool->active_count() <= clients);
  check(pool->upstream().pinned() <= pool->active_count() + pool->idle_count());
}

void Session::run(const uint8_t* data, size_t size) {
  server_ = std::make_unique<FakeServer>(&loop_, header_.login, header_.server_chunk, progress_);
  const uint16_t server_port = server_->start();
  check(server_port != 0);
  proxy_ = std::make_unique<proxy::Proxy>(make_config(server_port), &loop_);
  check(proxy_->start().ok());
  a_ = add_client(header_.raw, header_.options, header_.application_name, header_.admin);
  settle();

  size_t i = 0;
  while (i < size) {
    const uint8_t op = data[i++];
    if ((op & 3) == 2) {
      event((op >> 2) % 10);
    } else {
      size_t length = 0;
      if (i < size) length = size_t{data[i++]} << 8;
      if (i < size) length |= data[i++];
      length = std::min(length, size - i);
      const std::string_view bytes(reinterpret_cast<const char*>(data + i), length);
      i += length;
      if ((op & 3) == 1) {
        if (b_ == nullptr) b_ = add_client(/*raw=*/false, false, false);
        b_->peer().send(bytes);
      } else {
        a_->peer().send(bytes);
      }
      if ((op & 3) == 3) continue;
    }
    settle();
    check_invariants();
  }
  finish();
}

void Session::finish() {
  settle();
  check_invariants();
  switch (header_.ending) {
    case 0:
    case 1:
    case 2:
      for (auto& client : clients_) {
        if (header_.ending == 0) {
          protocol::Bytes terminate;
          protocol::append_terminate(terminate);
          client->peer().send(terminate);
          client->peer().pump();
        }
        client->peer().close(/*reset=*/header_.ending == 1);
      }
      settle();
      check_invariants();
      break;
    default:
      break;
  }
  proxy_->stop();
  server_->stop();
  for (auto& client : clients_) client->peer().close(/*reset=*/true);
  // Everything is closing: the loop must run dry in a few turns.
  for (int turn = 0; turn < 1000 && uv_loop_alive(&loop_) != 0; ++turn) {
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  check(uv_loop_alive(&loop_) == 0);
  check(server_->closed());
  proxy_.reset();
  server_.reset();
  clients_.clear();
  check(uv_loop_close(&loop_) == 0);
}

}  // namespace
}  // namespace pgmux::fuzz

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  pgmux::proxy::init_logging("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kHeaderSize = 3;
  if (size < kHeaderSize) return 0;
  pgmux::fuzz::Session session(pgmux::fuzz::decode_header(data));
  session.run(data + kHeaderSize, size - kHeaderSize);
  return 0;
}
