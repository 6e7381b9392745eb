// Link: its lifetime, the pending queue, and the relay from server to client.
// The client-to-server half is in link_requests.cpp, the session parameters
// in link_settings.cpp.
#include "proxy/link.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cassert>

#include "protocol/extended.h"
#include "protocol/message_type.h"
#include "protocol/messages.h"
#include "protocol/sqlstate.h"
#include "proxy/pool.h"

namespace pgmux::proxy {
namespace fe = protocol::fe;
namespace be = protocol::be;
using protocol::FrameStatus;

Link::Link(LinkServer& server, Pool& pool, const config::Config& config, protocol::Bytes& assembly)
    : server_(server), pool_(pool), stats_(pool.stats()), config_(config), assembly_(assembly) {}

Link::~Link() {
  // Entries own a reference to their statement.
  while (!pending_.empty()) {
    const Pending entry = pending_.pop();
    if (entry.statement != nullptr) pool_.statements().release(entry.statement);
  }
}

// ---- Lifetime ---------------------------------------------------------------

void Link::begin(LinkClient& client) {
  assert(!active());
  client_ = &client;
  ++epoch_;
  client_left_ = 0;
  server_left_ = 0;
  release_after_flush_ = false;
  assembling_ = false;
  query_started_us_ = 0;
  xact_started_us_ = 0;
  sync_session();
}

void Link::end() {
  if (!active()) return;
  client_ = nullptr;
  ++epoch_;
  release_after_flush_ = false;
  if (pinned_) {
    pinned_ = false;
    pinned_on_->on_unpinned();
  }
}

void Link::on_client_departed() {
  if (!active()) return;
  // A pinned client's server holds its session state: never reused.
  Stream& stream = server_.stream();
  const bool reusable =
      !pinned_ && clean() && server_left_ == 0 && !stream.lending() && !stream.lent_write_pending();
  end();
  if (reusable) {
    server_.release();
  } else {
    server_.close("its client disconnected inside a transaction");
  }
}

void Link::on_server_closing() {
  if (!active()) return;
  LinkClient* client = client_;
  end();
  client->on_server_lost();
}

// ---- The pending queue ----------------------------------------------------------

void Link::note_client_message(char type) {
  if (copy_in_) {
    switch (type) {
      case fe::kCopyData:
        return;
      case fe::kSync:
      case fe::kFlush:
        // In copy-in mode the server ignores Sync and Flush (libpq sends a
        // Sync after an extended-protocol COPY without knowing it is one).
        return;
      case fe::kCopyDone:
      case fe::kCopyFail:
        copy_in_ = false;  // Ends the COPY; the server answers for the COPY.
        return;
      default:
        // Anything else ends the COPY with an error (the server's), and is
        // then handled as after any error.
        copy_in_ = false;
        break;
    }
  }
  expect(Pending::forwarded(type));
}

void Link::on_copy_in() {
  // The request at the head of the queue started copy-in mode. Syncs the
  // client sent behind it are read in that mode and ignored: no
  // ReadyForQuery will answer them.
  copy_in_ = true;
  const size_t dropped = pending_.erase_after_front(
      [](const Pending& p) { return p.request == fe::kSync && p.reply == Reply::kForward; });
  outstanding_ -= std::min<uint32_t>(outstanding_, static_cast<uint32_t>(dropped));
}

void Link::expect(const Pending& entry) {
  // A Parse entry holds a reference, so its statement outlives a DEALLOCATE
  // or DISCARD ALL that comes before the answer (a Close entry already owns
  // the reference of the statement it evicts).
  if (entry.request == fe::kParse) {
    if (entry.statement != nullptr) StatementRegistry::add_ref(entry.statement);
    if (entry.reply != Reply::kSwallow) ++stats_.totals.client_parse_count;
    if (entry.reply != Reply::kFake) ++stats_.totals.server_parse_count;
  } else if (entry.request == fe::kBind) {
    ++stats_.totals.bind_count;
  }
  switch (entry.reply) {
    case Reply::kForward:
      switch (entry.request) {
        case fe::kQuery:  // Query, Sync and FunctionCall each get exactly one ReadyForQuery.
        case fe::kSync:
        case fe::kFunctionCall:
          if (outstanding_ == 0) {
            query_started_us_ = now_us();
            if (xact_started_us_ == 0) xact_started_us_ = query_started_us_;
          }
          ++outstanding_;
          unsynced_ = false;
          pending_.push(entry);
          return;
        case fe::kCopyData:  // CopyData, CopyDone, CopyFail and Flush leave nothing to sync.
        case fe::kCopyDone:
        case fe::kCopyFail:
        case fe::kFlush:
          return;
        case fe::kParse:  // Parse, Bind, Describe, Execute, Close: answered at the next Sync.
        case fe::kBind:
        case fe::kDescribe:
        case fe::kExecute:
        case fe::kClose:
          unsynced_ = true;
          pending_.push(entry);
          return;
        default:  // Unknown: the server will answer with an error.
          unsynced_ = true;
          return;
      }
    case Reply::kSwallow:
      unsynced_ = true;
      pending_.push(entry);
      return;
    case Reply::kFake:
      pending_.push(entry);
      if (pending_.size() == 1) answer_fakes();
      return;
  }
}

void Link::answer_fakes() {
  while (!pending_.empty() && pending_.front().reply == Reply::kFake) {
    const Pending entry = pending_.pop();
    finish(entry);
    if (client_ == nullptr) continue;
    scratch_.clear();
    if (entry.fake == be::kParseComplete) {
      protocol::append_parse_complete(scratch_);
    } else {
      protocol::append_close_complete(scratch_);
    }
    client_->stream().write_owned(scratch_);
  }
}

void Link::undo(const Pending& entry) {
  if (entry.statement == nullptr) return;
  if (entry.request == fe::kParse) {
    // The statement was not prepared after all (a faked ParseComplete
    // stands for one that was, and stays).
    if (entry.reply != Reply::kFake) server_.statements().erase(entry.statement);
    if (entry.client_name && client_ != nullptr) {
      if (ClientStatements* names = client_->statements(false)) names->forget(entry.statement);
    }
  } else if (entry.request == fe::kClose && entry.reply == Reply::kSwallow) {
    // The Close pgmux sent to make room was skipped: still prepared (over
    // capacity by one until the next eviction). finish() drops the entry's
    // own reference.
    server_.statements().restore(entry.statement);
  }
}

void Link::finish(const Pending& entry) {
  if (entry.request == fe::kParse && entry.reply != Reply::kFake && entry.statement != nullptr &&
      server_.statements().contains(entry.statement)) {
    entry.statement->valid = true;
  }
  if (entry.statement != nullptr) pool_.statements().release(entry.statement);
}

void Link::skip_to_sync() {
  while (!pending_.empty() && !ends_at_ready(pending_.front().request)) {
    const Pending entry = pending_.pop();
    undo(entry);
    finish(entry);
  }
}

void Link::count_ready(char status) {
  const uint64_t now = now_us();
  if (query_started_us_ != 0) {
    ++stats_.totals.query_count;
    stats_.totals.query_time_us += now - query_started_us_;
  }
  // A pipelined request behind this one was sent already: its time starts now.
  query_started_us_ = outstanding_ > 0 ? now : 0;
  if (status != protocol::tx::kIdle || xact_started_us_ == 0) return;
  const uint64_t took = now - xact_started_us_;
  ++stats_.totals.xact_count;
  stats_.totals.xact_time_us += took;
  stats_.xact_time.observe(took);
  xact_started_us_ = outstanding_ > 0 ? now : 0;
}

// ---- Server to client -------------------------------------------------------

bool Link::drain_to_client() {
  return drain(server_.stream(), client_->stream(), stats_.totals.sent);
}

void Link::on_server_readable() {
  Stream& stream = server_.stream();
  if (stream.lending()) return;  // Resumed in on_server_write_done.
  const uint32_t epoch = epoch_;
  // Answers that waited for a write to finish.
  if (!pending_.empty() && pending_.front().reply == Reply::kFake) {
    if (!drain_to_client()) return;
    answer_fakes();
  }
  mark_messages(
      stream.input(), server_left_, config_.max_message_size,
      [this](const protocol::Frame& frame, protocol::ByteView bytes) {
        if (frame.status == FrameStatus::kInvalid) {
          server_.close("invalid message from the server");
          return Step::kStop;
        }
        // The common case: a row or a non-final answer to a request
        // whose answers are forwarded; decided by two compares.
        const char type = frame.type;
        if (!pending_.empty() && pending_.front().reply == Reply::kForward &&
            (type == be::kDataRow ||
             (type != be::kParameterStatus && type != be::kReadyForQuery &&
              type != be::kErrorResponse && type != be::kCopyInResponse &&
              type != be::kCopyBothResponse && !completes(pending_.front().request, type)))) {
          return Step::kForward;
        }
        return on_response(frame, bytes);
      });
  if (epoch_ != epoch) return;
  flush_to_client();
  if (epoch_ != epoch) return;
  // A buffer that filled stopped reading; with room made and nothing in
  // flight, reading goes on.
  if (!stream.lending() && !stream.reading()) stream.start_reading();
}

void Link::on_server_write_done() {
  server_.stream().start_reading();
  const uint32_t epoch = epoch_;
  maybe_release();
  if (epoch_ == epoch) on_server_readable();
}

void Link::flush_to_client() {
  // While a write is in flight, on_server_write_done resumes.
  if (!server_.stream().lending() && drain_to_client()) maybe_release();
}

void Link::on_drain() {
  // A client that is not pinned is closed when its server is released; a
  // pinned one between transactions holds its server with nothing in flight.
  if (!active() || !pinned_) return;
  release_after_flush_ = true;
  maybe_release();
}

void Link::maybe_release() {
  if (!release_after_flush_ || !active()) return;
  // A pinned client keeps its server: its session state lives there. While
  // pgmux drains, the end of its transaction is the end of its session.
  if (pinned_) {
    release_after_flush_ = false;
    if (pool_.draining_clients() && clean() && !server_.stream().lending() &&
        !server_.stream().lent_write_pending() && client_left_ == 0) {
      client_->fail(protocol::sqlstate::kAdminShutdown, kAdminShutdownMessage, {});
    }
    return;
  }
  if (!clean()) {
    release_after_flush_ = false;  // The client asked for more; its ReadyForQuery decides.
    return;
  }
  // Both directions must be at a message boundary with nothing in flight.
  // The client may be in the middle of a message the server will drop (the
  // rest of a CopyData after the server ended the COPY): the server is kept
  // until that message is through, or the next client would send the
  // server the tail of it. on_client_readable tries again when it is.
  const Stream& stream = server_.stream();
  if (stream.lending() || stream.lent_write_pending()) return;
  if (client_left_ > 0) return;
  release_after_flush_ = false;
  server_.release();
}

Step Link::on_response(const protocol::Frame& frame, protocol::ByteView bytes) {
  Buffer& in = server_.stream().input();
  const char type = frame.type;
  // ParameterStatus and ReadyForQuery are inspected; an ErrorResponse
  // changes the queue. Everything else is decided from the header.
  const bool inspect = type == be::kParameterStatus || type == be::kReadyForQuery;
  if (inspect && frame.size > in.capacity()) {
    server_.close("oversized message from the server");
    return Step::kStop;
  }
  if (inspect && !frame.whole_in(bytes)) return Step::kStop;
  const bool head_swallowed = !pending_.empty() && pending_.front().reply == Reply::kSwallow;
  if (head_swallowed && !frame.whole_in(bytes)) {
    // Swallowed answers are small; wait for the whole message.
    if (frame.size > in.capacity()) {
      server_.close("oversized answer to a request pgmux sent");
    }
    return Step::kStop;
  }
  // Swallowing drops bytes, which needs everything before them sent.
  if (head_swallowed && !drain_to_client()) return Step::kStop;

  if (type == be::kParameterStatus) on_parameter_status(bytes.first(frame.size));
  if (type == be::kDataRow && head_swallowed && pending_.front().settings) {
    on_settings_row(bytes.first(frame.size));
  }
  bool done = false;
  switch (type) {
    case be::kNoticeResponse:
    case be::kNotificationResponse:
    case be::kParameterStatus:
      break;
    case be::kCopyInResponse:
    case be::kCopyBothResponse:
      on_copy_in();
      break;
    case be::kReadyForQuery:
      return on_ready_for_query(frame, bytes, head_swallowed);
    case be::kErrorResponse:
      error_since_ready_ = true;
      // An error ends copy-in mode: what the client still sends for the
      // COPY is dropped by the server (after a Query), or skipped up to
      // the next Sync (extended protocol), which counts again.
      copy_in_ = false;
      if (!pending_.empty() && !ends_at_ready(pending_.front().request)) {
        const Pending entry = pending_.pop();
        undo(entry);
        finish(entry);
        skip_to_sync();
        // The error itself goes to the client even when it answers a
        // request pgmux made on its behalf: the client's own request
        // depended on it and is skipped too.
        in.mark_parsed(std::min<size_t>(frame.size, bytes.size()));
        server_left_ = frame.size - std::min<size_t>(frame.size, bytes.size());
        return Step::kHandled;
      }
      break;
    default:
      done = !pending_.empty() && completes(pending_.front().request, type);
      break;
  }
  if (head_swallowed) {
    in.consume(frame.size);
  } else {
    const size_t take = std::min<size_t>(frame.size, bytes.size());
    in.mark_parsed(take);
    server_left_ = frame.size - take;
  }
  if (done) finish(pending_.pop());
  if (done && !pending_.empty() && pending_.front().reply == Reply::kFake) {
    if (!drain_to_client()) return Step::kStop;
    answer_fakes();
  }
  return Step::kHandled;
}

Step Link::on_ready_for_query(const protocol::Frame& frame, protocol::ByteView bytes,
                              bool head_swallowed) {
  Buffer& in = server_.stream().input();
  auto status = protocol::parse_ready_for_query(bytes.first(frame.size));
  if (!status) {
    server_.close("malformed ReadyForQuery from the server");
    return Step::kStop;
  }
  tx_status_ = *status;
  copy_in_ = false;
  skip_to_sync();  // Leftovers, if the server answered fewer than expected.
  if (!pending_.empty() && pending_.front().reply == Reply::kSwallow) {
    if (!head_swallowed && !drain_to_client()) return Step::kStop;
    // The end of the session sync or the settings read-back pgmux sent:
    // not the client's business.
    if (error_since_ready_) {
      spdlog::warn("{}: {} failed", server_.tag(),
                   pending_.front().settings ? "reading back the session parameters"
                                             : "bringing the session parameters in line");
    }
    error_since_ready_ = false;
    in.consume(frame.size);
    pending_.pop();
    answer_fakes();
    if (clean()) release_after_flush_ = true;
    return Step::kHandled;
  }
  if (outstanding_ > 0) --outstanding_;
  if (!pending_.empty()) pending_.pop();
  in.mark_parsed(frame.size);
  count_ready(*status);
  if (!settings_unsure_) {
    apply_untracked_sets();
  } else if (clean()) {
    // The transaction is over and nothing else is in flight: what it left
    // is what the server says now. Until its answer the server is not
    // clean, so it stays with this client.
    read_back_settings();
  }
  error_since_ready_ = false;
  if (clean()) release_after_flush_ = true;
  if (!pending_.empty() && pending_.front().reply == Reply::kFake) {
    if (!drain_to_client()) return Step::kStop;
    answer_fakes();
  }
  return Step::kHandled;
}

}  // namespace pgmux::proxy
