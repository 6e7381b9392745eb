#include "bench/client.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace pgmux::bench {

Client::Client(uv_loop_t* loop, ClientEvents& events, const ConnTargets& targets, size_t target,
               const Scenario& scenario)
    : loop_(loop), events_(events), targets_(targets), target_(target), scenario_(scenario) {
  rollback_.steps.resize(1);
  rollback_.steps[0].sql = "ROLLBACK";
}

Client::~Client() { close(); }

void Client::close() {
  drop_watch();
  if (conn_ != nullptr) {
    PQfinish(conn_);
    conn_ = nullptr;
  }
  state_ = State::kDisconnected;
}

void Client::connect() {
  assert(state_ == State::kDisconnected);
  state_ = State::kConnecting;
  connect_start_ns_ = uv_hrtime();
  conn_ = PQconnectStartParams(targets_.keys(target_), targets_.values(target_), 0);
  if (conn_ == nullptr) {
    lost("out of memory");
    return;
  }
  if (PQstatus(conn_) == CONNECTION_BAD) {
    lost(PQerrorMessage(conn_));
    return;
  }
  // libpq: before the first PQconnectPoll, behave as if it returned
  // PGRES_POLLING_WRITING.
  if (!watch(UV_WRITABLE)) lost("libpq has no socket for the connection");
}

void Client::run(Rng& rng) {
  assert(state_ == State::kReady);
  scenario_.next(txn_, rng);
  state_ = State::kBusy;
  step_ = 0;
  failed_ = false;
  if (txn_.steps.empty()) {
    step_done();
    return;
  }
  send_step();
}

const Transaction& Client::current() const {
  switch (state_) {
    case State::kSetup:
      return setup_;
    case State::kRollingBack:
      return rollback_;
    default:
      return txn_;
  }
}

void Client::on_poll_cb(uv_poll_t* handle, int status, int events) noexcept {
  auto* w = static_cast<Watch*>(handle->data);
  if (w->client != nullptr) w->client->on_poll(status, events);
}

void Client::on_watch_closed(uv_handle_t* handle) noexcept {
  delete static_cast<Watch*>(handle->data);
}

void Client::on_poll(int status, int events) {
  if (status < 0) {
    // libuv reports EPOLLERR as UV_EBADF and stops the handle. libpq reads
    // the socket's own error (a refused connect, a reset) and says it better.
    if (watch_ != nullptr) watch_->events = 0;
    if (state_ == State::kConnecting) {
      poll_connect();
      return;
    }
    if (conn_ != nullptr && PQconsumeInput(conn_) == 0) {
      lost(PQerrorMessage(conn_));
      return;
    }
    lost(std::string("socket error: ") + uv_strerror(status));
    return;
  }
  switch (state_) {
    case State::kDisconnected:
      return;
    case State::kConnecting:
      poll_connect();
      return;
    case State::kReady:
      // An idle connection hears only notices or its own end (the server or
      // a pooler closing it); the end makes PQconsumeInput fail.
      if (PQconsumeInput(conn_) == 0 || PQstatus(conn_) == CONNECTION_BAD) {
        lost(PQerrorMessage(conn_));
      }
      return;
    case State::kSetup:
    case State::kBusy:
    case State::kRollingBack:
      if ((events & UV_WRITABLE) != 0) {
        const int rc = PQflush(conn_);
        if (rc < 0) {
          lost(PQerrorMessage(conn_));
          return;
        }
        if (!watch(rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE)) {
          lost("lost the socket");
          return;
        }
      }
      if ((events & UV_READABLE) != 0) {
        if (PQconsumeInput(conn_) == 0) {
          lost(PQerrorMessage(conn_));
          return;
        }
        drain();
      }
      return;
  }
}

void Client::poll_connect() {
  switch (PQconnectPoll(conn_)) {
    case PGRES_POLLING_READING:
      if (!watch(UV_READABLE)) lost("libpq has no socket for the connection");
      return;
    case PGRES_POLLING_WRITING:
      if (!watch(UV_WRITABLE)) lost("libpq has no socket for the connection");
      return;
    case PGRES_POLLING_OK:
      on_connected();
      return;
    default:
      lost(PQerrorMessage(conn_));
      return;
  }
}

void Client::on_connected() {
  connect_failures_ = 0;
  const uint64_t connect_us = (uv_hrtime() - connect_start_ns_) / 1000;
  if (PQsetnonblocking(conn_, 1) != 0) {
    lost(PQerrorMessage(conn_));
    return;
  }
  events_.on_connected(*this, connect_us);
  if (state_ != State::kConnecting) return;  // The owner closed it meanwhile.
  scenario_.setup(setup_);
  if (!setup_.steps.empty()) {
    state_ = State::kSetup;
    step_ = 0;
    failed_ = false;
    send_step();
    return;
  }
  state_ = State::kReady;
  if (!watch(UV_READABLE)) {
    lost("lost the socket");
    return;
  }
  events_.on_ready(*this);
}

void Client::send_step() {
  const Step& step = current().steps[step_];
  const char* values[4];
  for (int i = 0; i < step.param_count && i < 4; ++i) {
    values[i] = step.params[static_cast<size_t>(i)].c_str();
  }
  int ok = 0;
  switch (step.kind) {
    case Step::Kind::kQuery:
      ok = PQsendQuery(conn_, step.sql.c_str());
      break;
    case Step::Kind::kParams:
      ok = PQsendQueryParams(conn_, step.sql.c_str(), step.param_count, nullptr, values, nullptr,
                             nullptr, 0);
      break;
    case Step::Kind::kPrepare:
      ok = PQsendPrepare(conn_, step.name, step.sql.c_str(), step.param_count, nullptr);
      break;
    case Step::Kind::kPrepared:
      ok = PQsendQueryPrepared(conn_, step.name, step.param_count, values, nullptr, nullptr, 0);
      break;
  }
  if (ok == 0) {
    lost(PQerrorMessage(conn_));
    return;
  }
  flush();
}

void Client::flush() {
  const int rc = PQflush(conn_);
  if (rc < 0) {
    lost(PQerrorMessage(conn_));
    return;
  }
  if (!watch(rc == 1 ? UV_READABLE | UV_WRITABLE : UV_READABLE)) lost("lost the socket");
}

void Client::drain() {
  while (PQisBusy(conn_) == 0) {
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr) {
      step_done();
      return;
    }
    note_result(result);
    PQclear(result);
  }
  if (PQstatus(conn_) == CONNECTION_BAD) lost(PQerrorMessage(conn_));
}

void Client::note_result(const PGresult* result) {
  const ExecStatusType status = PQresultStatus(result);
  if (status != PGRES_FATAL_ERROR && status != PGRES_BAD_RESPONSE) return;
  if (failed_) return;  // The first error of a transaction names it.
  failed_ = true;
  const char* sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  error_sqlstate_ = sqlstate != nullptr ? sqlstate : "";
  error_message_ = primary != nullptr ? primary : PQresultErrorMessage(result);
}

void Client::step_done() {
  if (state_ == State::kRollingBack) {
    state_ = State::kReady;
    events_.on_transaction_failed(*this, error_sqlstate_, error_message_);
    return;
  }
  if (failed_) {
    if (state_ == State::kSetup) {
      lost(error_message_);
      return;
    }
    // Leave no open transaction behind (pgbench does the same after an
    // error inside BEGIN .. END).
    if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
      state_ = State::kRollingBack;
      step_ = 0;
      send_step();
      return;
    }
    state_ = State::kReady;
    events_.on_transaction_failed(*this, error_sqlstate_, error_message_);
    return;
  }
  if (++step_ < current().steps.size()) {
    send_step();
    return;
  }
  const State finished = state_;
  state_ = State::kReady;
  if (finished == State::kSetup) {
    events_.on_ready(*this);
  } else {
    events_.on_transaction_done(*this);
  }
}

void Client::lost(std::string_view message) {
  LostWhile during = LostWhile::kIdle;
  if (state_ == State::kConnecting) {
    during = LostWhile::kConnecting;
    ++connect_failures_;
  } else if (state_ == State::kBusy || state_ == State::kRollingBack) {
    during = LostWhile::kInTransaction;
  }
  // The message usually lives inside conn_: copy it before PQfinish. When
  // the server sent an error before closing (a FATAL such as 57P01), that
  // error names the loss better than libpq's "server closed the connection".
  std::string sqlstate;
  std::string text(message.empty() ? "connection lost" : message);
  const bool running =
      state_ == State::kSetup || state_ == State::kBusy || state_ == State::kRollingBack;
  if (running && failed_ && !error_sqlstate_.empty()) {
    sqlstate = error_sqlstate_;
    text = error_message_;
  }
  close();
  events_.on_connection_lost(*this, during, sqlstate, text);
}

bool Client::watch(int events) {
  const int fd = PQsocket(conn_);
  if (fd < 0) return false;
  if (watch_ != nullptr && watch_->fd != fd) drop_watch();
  if (watch_ == nullptr) {
    auto* w = new Watch{uv_poll_t{}, this, fd, 0};
    w->poll.data = w;
    const int rc = uv_poll_init_socket(loop_, &w->poll, fd);
    if (rc != 0) {
      // The handle was never initialised: nothing to close.
      delete w;
      return false;
    }
    watch_ = w;
  }
  // During a handshake libpq may close its socket and open the next one
  // under the same number (the next address, or a retry without TLS); the
  // kernel then forgot the old registration, so register again each time.
  if (watch_->events != events || state_ == State::kConnecting) {
    if (uv_poll_start(&watch_->poll, events, &Client::on_poll_cb) != 0) return false;
    watch_->events = events;
  }
  return true;
}

void Client::drop_watch() {
  if (watch_ == nullptr) return;
  // Closing before PQfinish closes the socket: libuv removes the fd from
  // epoll during uv_close, which needs the fd still open.
  watch_->client = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&watch_->poll), &Client::on_watch_closed);
  watch_ = nullptr;
}

}  // namespace pgmux::bench
