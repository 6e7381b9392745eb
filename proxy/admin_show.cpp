// The admin console's SHOW tables, with PgBouncer 1.24's columns in its
// order and units (counts, bytes, microseconds; maxwait in seconds with
// maxwait_us the rest). Columns older collectors read by name that 1.24
// dropped (total_requests, reserve_pool) come last, so readers by position
// still see 1.24's layout. SHOW PGMUX has pgmux's own per-pool figures.
#include <sys/socket.h>

#include <cinttypes>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/result_set.h"
#include "proxy/admin.h"
#include "proxy/admin_table.h"
#include "proxy/client_conn.h"
#include "proxy/log.h"
#include "proxy/pool.h"
#include "proxy/proxy.h"
#include "proxy/server_conn.h"
#include "proxy/stats_period.h"

namespace pgmux::proxy {
using protocol::Bytes;
using protocol::ColumnDescription;
using namespace admin_table;  // NOLINT(google-build-using-namespace): the table vocabulary.

namespace {

// "10.0.0.5:51234" or "[::1]:51234" -> address and port.
std::pair<std::string, std::string> split_address(std::string_view peer) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string_view::npos) return {std::string(peer), "0"};
  std::string_view host = peer.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  return {std::string(host), std::string(peer.substr(colon + 1))};
}

std::pair<std::string, std::string> local_address(Stream& stream) {
  sockaddr_storage address{};
  int length = sizeof address;
  if (uv_tcp_getsockname(stream.tcp(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    return {"", "0"};
  }
  return split_address(format_address(reinterpret_cast<const sockaddr*>(&address)));
}

std::string upper(std::string_view word) {
  std::string out(word);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// The STATS_TOTALS and STATS_AVERAGES columns after "database".
const std::vector<ColumnDescription> kStatsColumns = {
    text("database"),
    count("server_assignment_count"),
    count("xact_count"),
    count("query_count"),
    count("bytes_received"),
    count("bytes_sent"),
    count("xact_time"),
    count("query_time"),
    count("wait_time"),
    count("client_parse_count"),
    count("server_parse_count"),
    count("bind_count"),
};

std::vector<Cell> stats_cells(const std::string& database, const StatsTotals& t) {
  return {str(database),
          num(t.server_assignment_count),
          num(t.xact_count),
          num(t.query_count),
          num(t.received),
          num(t.sent),
          num(t.xact_time_us),
          num(t.query_time_us),
          num(t.wait_time_us),
          num(t.client_parse_count),
          num(t.server_parse_count),
          num(t.bind_count)};
}

StatsTotals averages_as_totals(const PeriodAverages& a) {
  StatsTotals t;
  t.server_assignment_count = a.server_assignment_count;
  t.xact_count = a.xact_count;
  t.query_count = a.query_count;
  t.received = a.received;
  t.sent = a.sent;
  t.xact_time_us = a.xact_time_us;
  t.query_time_us = a.query_time_us;
  t.wait_time_us = a.wait_time_us;
  t.client_parse_count = a.client_parse_count;
  t.server_parse_count = a.server_parse_count;
  t.bind_count = a.bind_count;
  return t;
}

const char* server_state(const ServerConn& server) {
  switch (server.pool_list) {
    case PoolList::kActive:
      return "active";
    case PoolList::kIdle:
      return "idle";
    case PoolList::kChecking:
      return "tested";
    default:
      return "new";  // Connecting or logging in.
  }
}

const char* client_state(ClientConn::State state) {
  switch (state) {
    case ClientConn::State::kIdle:
    case ClientConn::State::kActive:
    case ClientConn::State::kAdmin:
      return "active";
    case ClientConn::State::kWaitingForServer:
    case ClientConn::State::kWaitingForWelcome:
      return "waiting";
    default:
      return "login";
  }
}

// The columns SHOW CLIENTS and SHOW SERVERS share (PgBouncer 1.24).
const std::vector<ColumnDescription> kConnectionColumns = {
    text("type"),
    text("user"),
    text("database"),
    text("replication"),
    text("state"),
    text("addr"),
    count("port"),
    text("local_addr"),
    count("local_port"),
    text("connect_time"),
    text("request_time"),
    count("wait"),
    count("wait_us"),
    count("close_needed"),
    text("ptr"),
    text("link"),
    count("remote_pid"),
    text("tls"),
    text("application_name"),
    count("prepared_statements"),
    count("id"),
};

}  // namespace

bool AdminSession::show(std::string_view what_text, Bytes& out) {
  const std::string what = upper(what_text);
  const TimeMs now = proxy_.now();
  const config::Config& config = proxy_.config();

  if (what == "POOLS") {
    Table table(out,
                {text("database"), text("user"), count("cl_active"), count("cl_waiting"),
                 count("cl_active_cancel_req"), count("cl_waiting_cancel_req"), count("sv_active"),
                 count("sv_active_cancel"), count("sv_being_canceled"), count("sv_idle"),
                 count("sv_used"), count("sv_tested"), count("sv_login"), count("maxwait"),
                 count("maxwait_us"), text("pool_mode"), text("load_balance_hosts")});
    const uint64_t now_micros = now_us();
    for (const auto& pool : proxy_.pools()) {
      uint64_t wait_us = 0;
      if (const PooledClient* head = pool->first_waiting(); head != nullptr) {
        if (head->queued_at_us != 0 && now_micros > head->queued_at_us) {
          wait_us = now_micros - head->queued_at_us;
        }
      }
      const size_t waiting = pool->waiting_count();
      const size_t clients = pool->client_count();
      table.row({str(pool->name()), str(pool->database().upstream.user),
                 num(clients > waiting ? clients - waiting : 0), num(waiting), num(0), num(0),
                 num(pool->active_count()), num(0), num(0), num(pool->idle_count()), num(0),
                 num(pool->checking_count()), num(pool->opening_count()), num(wait_us / 1000000),
                 num(wait_us % 1000000), str("transaction"), std::nullopt});
    }
    return true;
  }

  if (what == "STATS") {
    Table table(out, {text("database"),
                      count("total_server_assignment_count"),
                      count("total_xact_count"),
                      count("total_query_count"),
                      count("total_received"),
                      count("total_sent"),
                      count("total_xact_time"),
                      count("total_query_time"),
                      count("total_wait_time"),
                      count("total_client_parse_count"),
                      count("total_server_parse_count"),
                      count("total_bind_count"),
                      count("avg_server_assignment_count"),
                      count("avg_xact_count"),
                      count("avg_query_count"),
                      count("avg_recv"),
                      count("avg_sent"),
                      count("avg_xact_time"),
                      count("avg_query_time"),
                      count("avg_wait_time"),
                      count("avg_client_parse_count"),
                      count("avg_server_parse_count"),
                      count("avg_bind_count"),
                      count("total_requests")});
    for (const auto& pool : proxy_.pools()) {
      const StatsTotals& t = pool->stats().totals;
      const PeriodAverages a = period_averages(pool->stats());
      // The totals, then the averages (the same columns), then the old
      // total_requests.
      std::vector<Cell> row = stats_cells(pool->name(), t);
      const std::vector<Cell> averages = stats_cells(pool->name(), averages_as_totals(a));
      row.insert(row.end(), averages.begin() + 1, averages.end());
      row.push_back(num(t.query_count));
      table.row(row);
    }
    return true;
  }

  if (what == "STATS_TOTALS" || what == "STATS_AVERAGES") {
    Table table(out, kStatsColumns);
    for (const auto& pool : proxy_.pools()) {
      table.row(
          what == "STATS_TOTALS"
              ? stats_cells(pool->name(), pool->stats().totals)
              : stats_cells(pool->name(), averages_as_totals(period_averages(pool->stats()))));
    }
    return true;
  }

  if (what == "DATABASES") {
    Table table(
        out, {text("name"), text("host"), count("port"), text("database"), text("force_user"),
              count("pool_size"), count("min_pool_size"), count("reserve_pool_size"),
              count("server_lifetime"), text("pool_mode"), text("load_balance_hosts"),
              count("max_connections"), count("current_connections"),
              count("max_client_connections"), count("current_client_connections"), count("paused"),
              count("disabled"), count("reserve_pool")});
    for (const auto& pool : proxy_.pools()) {
      const config::Upstream& up = pool->database().upstream;
      table.row({str(pool->name()), str(up.host), num(up.port), str(up.dbname), str(up.user),
                 num(pool->upstream().cap()), num(config.min_server_connections), num(0),
                 num(static_cast<uint64_t>(config.server_lifetime.count()) / 1000),
                 str("transaction"), std::nullopt, num(pool->upstream().cap()),
                 num(pool->server_count()), num(config.max_client_conn), num(pool->client_count()),
                 num(pool->paused() ? 1 : 0), num(0), num(0)});
    }
    return true;
  }

  if (what == "LISTS") {
    size_t used_servers = proxy_.servers().size();
    std::vector<std::string> users;
    for (const auto& pool : proxy_.pools()) {
      const std::string& user = pool->database().upstream.user;
      if (std::find(users.begin(), users.end(), user) == users.end()) users.push_back(user);
    }
    for (const config::User& user : config.users) {
      if (std::find(users.begin(), users.end(), user.name) == users.end()) {
        users.push_back(user.name);
      }
    }
    Table table(out, {text("list"), count("items")});
    const std::pair<const char*, uint64_t> rows[] = {
        {"databases", proxy_.pools().size()},
        {"users", users.size()},
        {"peers", 0},
        {"pools", proxy_.pools().size()},
        {"peer_pools", 0},
        {"free_clients", 0},
        {"used_clients", proxy_.client_count()},
        {"login_clients", proxy_.logging_in_count()},
        {"free_servers", 0},
        {"used_servers", used_servers},
        {"dns_names", 0},
        {"dns_zones", 0},
        {"dns_queries", 0},
        {"dns_pending", 0},
    };
    for (const auto& [name, items] : rows) table.row({str(name), num(items)});
    return true;
  }

  if (what == "CLIENTS") {
    Table table(out, kConnectionColumns);
    for (const auto& owned : proxy_.clients()) {
      ClientConn* client = owned.get();
      if (client == nullptr || client->state() == ClientConn::State::kClosing) continue;
      const auto [addr, port] = split_address(client->peer_name());
      const auto [local_addr, local_port] = local_address(client->stream());
      uint64_t wait_ms = 0;
      if (client->pool_list == PoolList::kWaiting || client->pool_list == PoolList::kWelcome) {
        wait_ms = now - client->pool_since;
      }
      const ParamValue* app = client->overrides().find("application_name");
      const ClientStatements* statements = client->statements(false);
      table.row({str("C"),
                 str(client->user_name()),
                 str(client->database_name()),
                 str("no"),
                 str(client_state(client->state())),
                 str(addr),
                 str(port),
                 str(local_addr),
                 str(local_port),
                 str(wall_time(client->connected_at(), now)),
                 str(wall_time(client->connected_at(), now)),
                 num(wait_ms / 1000),
                 num((wait_ms % 1000) * 1000),
                 num(0),
                 pointer(client),
                 client->server() != nullptr ? pointer(client->server()) : Cell(),
                 num(0),
                 str(client->stream().tls() ? "TLS" : ""),
                 str(app != nullptr ? app->value : ""),
                 num(statements != nullptr ? statements->size() : 0),
                 num(client->id())});
    }
    return true;
  }

  if (what == "SERVERS") {
    std::vector<ServerConn*> servers;
    for (const auto& [id, server] : proxy_.servers()) servers.push_back(server.get());
    std::sort(servers.begin(), servers.end(),
              [](const ServerConn* a, const ServerConn* b) { return a->id() < b->id(); });
    Table table(out, kConnectionColumns);
    for (ServerConn* server : servers) {
      if (server->state() == ServerConn::State::kClosing) continue;
      Pool& pool = server->pool();
      const config::Upstream& up = pool.database().upstream;
      const auto [local_addr, local_port] = local_address(server->stream());
      const ParamValue* app = server->overrides().find("application_name");
      table.row({str("S"),
                 str(up.user),
                 str(pool.name()),
                 str("no"),
                 str(server_state(*server)),
                 str(up.host),
                 num(up.port),
                 str(local_addr),
                 str(local_port),
                 str(wall_time(server->opened_at(), now)),
                 str(wall_time(
                     server->idle_since() != 0 ? server->idle_since() : server->opened_at(), now)),
                 num(0),
                 num(0),
                 num(server->generation != pool.generation() ? 1 : 0),
                 pointer(server),
                 server->pooled_client() != nullptr ? pointer(server->pooled_client()) : Cell(),
                 num(static_cast<uint64_t>(server->backend_pid())),
                 str(server->stream().tls() ? "TLS" : ""),
                 str(app != nullptr ? app->value : up.application_name),
                 num(server->statements().size()),
                 num(server->id())});
    }
    return true;
  }

  if (what == "CONFIG") {
    append_config_table(config, out);
    return true;
  }

  if (what == "VERSION") {
    Table table(out, {text("version")});
    table.row({str("PgBouncer 1.24.0 (pgmux 0.1.0)")});
    return true;
  }

  if (what == "STATE") {
    const bool paused = proxy_.paused();
    Table table(out, {text("key"), text("value")});
    table.row({str("active"), yes_no(!paused && !proxy_.draining())});
    table.row({str("paused"), yes_no(paused)});
    table.row({str("suspended"), yes_no(false)});
    return true;
  }

  if (what == "USERS") {
    Table table(out,
                {text("name"), count("pool_size"), count("reserve_pool_size"), text("pool_mode"),
                 count("max_user_connections"), count("current_connections"),
                 count("max_user_client_connections"), count("current_client_connections")});
    std::vector<std::string> users;
    for (const config::User& user : config.users) users.push_back(user.name);
    for (const auto& pool : proxy_.pools()) {
      const std::string& user = pool->database().upstream.user;
      if (std::find(users.begin(), users.end(), user) == users.end()) users.push_back(user);
    }
    for (const std::string& user : users) {
      uint64_t servers = 0;
      for (const auto& pool : proxy_.pools()) {
        if (pool->database().upstream.user == user) servers += pool->server_count();
      }
      uint64_t clients = 0;
      for (const auto& client : proxy_.clients()) {
        if (client != nullptr && client->state() != ClientConn::State::kClosing &&
            client->user_name() == user) {
          ++clients;
        }
      }
      table.row({str(user), std::nullopt, std::nullopt, std::nullopt, num(0), num(servers), num(0),
                 num(clients)});
    }
    return true;
  }

  if (what == "PGMUX") {
    // pgmux's own figures per pool: the upstream's budget and pins, and what
    // went wrong (connect failures by kind, requests that timed out queued).
    Table table(out, {text("database"),
                      text("upstream"),
                      count("cap"),
                      count("limit"),
                      count("contended"),
                      count("open"),
                      count("pinned"),
                      count("paused"),
                      count("stale_servers"),
                      count("server_connects"),
                      count("refused_too_many_clients"),
                      count("refused_supavisor"),
                      count("refused_unavailable"),
                      count("unreachable"),
                      count("auth_failures"),
                      count("retries"),
                      count("queue_timeouts"),
                      count("limit_decreases"),
                      count("yields"),
                      count("surveys")});
    for (const auto& pool : proxy_.pools()) {
      const PoolStats& stats = pool->stats();
      auto failures = [&](ConnectFailure kind) {
        return num(stats.connect_failures[static_cast<size_t>(kind)]);
      };
      Upstream& up = pool->upstream();
      table.row({str(pool->name()),
                 str(up.endpoint()),
                 num(up.cap()),
                 num(up.limit()),
                 num(up.contended(proxy_.now()) ? 1 : 0),
                 num(up.open()),
                 num(up.pinned()),
                 num(pool->paused() ? 1 : 0),
                 num(pool->stale_count()),
                 num(stats.server_connects),
                 failures(ConnectFailure::kTooManyClients),
                 failures(ConnectFailure::kSupavisor),
                 failures(ConnectFailure::kUnavailable),
                 failures(ConnectFailure::kUnreachable),
                 failures(ConnectFailure::kAuth),
                 num(stats.retries),
                 num(stats.queue_timeouts),
                 num(up.decreases()),
                 num(up.yields()),
                 num(up.surveys())});
    }
    return true;
  }

  // SHOW of a setting a driver asks about: PgBouncer's fixed answers.
  static constexpr std::pair<std::string_view, std::string_view> kSettings[] = {
      {"CLIENT_ENCODING", "UTF8"},
      {"SERVER_ENCODING", "UTF8"},
      {"DATESTYLE", "ISO"},
      {"TIMEZONE", "GMT"},
      {"STANDARD_CONFORMING_STRINGS", "on"},
      {"DEFAULT_TRANSACTION_ISOLATION", "read committed"},
      {"SERVER_VERSION", "1.24.0/pgmux"},
  };
  for (const auto& [name, value] : kSettings) {
    if (what != name) continue;
    const std::string column = std::string(what_text);
    Table table(out, {text(column)});
    table.row({str(value)});
    return true;
  }
  return false;
}

}  // namespace pgmux::proxy
