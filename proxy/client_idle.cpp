// ClientConn between transactions: a request that only prepares statements
// some server has accepted before is answered without a server. The rest of
// ClientConn is in client_conn.cpp; while it holds a server, its Link relays.
#include <array>
#include <string_view>

#include "protocol/extended.h"
#include "protocol/frame.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "proxy/client_conn.h"
#include "proxy/pool.h"

namespace pgmux::proxy {
namespace fe = protocol::fe;
using protocol::FrameStatus;

bool ClientConn::answer_without_server() {
  // A request made only of Parse (of statements some server has accepted
  // before) and Close (statement) messages, then Sync, changes nothing on
  // any server: pgmux answers it alone. That is what a driver's prepare
  // call sends, and answering it without a server means a client thread
  // blocked in a synchronous prepare cannot wait on servers that other
  // clients of the same thread hold (pgbench -M prepared does this).
  Buffer& in = stream_.input();
  const protocol::ByteView bytes = in.unparsed();
  const uint32_t max_size = host_.config().max_message_size;
  constexpr int kMaxMessages = 16;
  std::array<std::string_view, kMaxMessages> names{};
  int count = 0;
  size_t end = 0;
  for (size_t offset = 0;; ++count) {
    if (count == kMaxMessages) return false;
    const protocol::ByteView rest = bytes.subspan(offset);
    const protocol::Frame frame = protocol::frame_message(rest, max_size);
    if (frame.status != FrameStatus::kComplete || !frame.whole_in(rest)) return false;
    const protocol::ByteView message = rest.first(frame.size);
    if (frame.type == fe::kSync) {
      end = offset + frame.size;
      break;
    }
    if (frame.type == fe::kParse) {
      auto parse = protocol::parse_parse(message);
      if (!parse || parse->name.empty()) return false;
      Statement* known =
          pool_->statements().find(parse->query, parse->param_count, parse->param_types);
      if (known == nullptr || !known->valid) return false;
      if (statements_ && statements_->find(parse->name) != nullptr) return false;  // 42P05.
      for (int i = 0; i < count; ++i) {
        if (names[i] == parse->name) return false;
      }
      names[count] = parse->name;
    } else if (frame.type == fe::kClose) {
      auto target = protocol::parse_close(message);
      if (!target || target->kind != protocol::target::kStatement) return false;
    } else {
      return false;
    }
    offset += frame.size;
  }
  protocol::Bytes& out = host_.scratch();
  out.clear();
  for (size_t offset = 0; offset < end;) {
    const protocol::ByteView rest = bytes.subspan(offset);
    const protocol::Frame frame = protocol::frame_message(rest, max_size);
    const protocol::ByteView message = rest.first(frame.size);
    if (frame.type == fe::kParse) {
      auto parse = protocol::parse_parse(message);
      statements(true)->add(parse->name, pool_->statements().acquire(
                                             parse->query, parse->param_count, parse->param_types));
      protocol::append_parse_complete(out);
    } else if (frame.type == fe::kClose) {
      auto target = protocol::parse_close(message);
      if (statements_ && !target->name.empty()) statements_->remove(target->name);
      protocol::append_close_complete(out);
    }
    offset += frame.size;
  }
  protocol::append_ready_for_query(out, protocol::tx::kIdle);
  in.consume(end);
  stream_.write_owned(out);
  return true;
}

}  // namespace pgmux::proxy
