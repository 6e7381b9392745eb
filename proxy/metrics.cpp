#include "proxy/metrics.h"

#include <dirent.h>
#include <unistd.h>

#include <charconv>
#include <fstream>
#include <sstream>
#include <string_view>

namespace pgmux::proxy {

namespace {

std::string number(double value) {
  char text[64];
  // Fixed notation, shortest digits that read back the same: "0.00025", "30".
  auto result = std::to_chars(text, text + sizeof text, value, std::chars_format::fixed);
  if (result.ec != std::errc()) result = std::to_chars(text, text + sizeof text, value);
  return std::string(text, result.ptr);
}

uint64_t to_u64(std::string_view text, bool& parsed) {
  uint64_t value = 0;
  const auto result = std::from_chars(text.data(), text.data() + text.size(), value);
  if (result.ec != std::errc()) parsed = false;
  return value;
}

std::string seconds(uint64_t us) { return number(static_cast<double>(us) / 1e6); }

// Appends the samples of one family; the family's lines stay together.
class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels` is empty or `name="value",...` with escaped values.
  void sample(std::string_view name, std::string_view labels, std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, uint64_t value) {
    sample(name, labels, std::to_string(value));
  }
  void histogram(std::string_view name, const std::string& labels, const Histogram& h) {
    const std::string bucket = std::string(name) + "_bucket";
    const std::string prefix = labels + ",le=\"";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < Histogram::kBoundsUs.size(); ++i) {
      cumulative += h.counts[i];
      sample(bucket, prefix + seconds(Histogram::kBoundsUs[i]) + "\"", cumulative);
    }
    cumulative += h.counts.back();
    sample(bucket, prefix + "+Inf\"", cumulative);
    sample(std::string(name) + "_sum", labels, seconds(h.sum_us));
    sample(std::string(name) + "_count", labels, h.count);
  }

 private:
  std::string& out_;
};

std::string label(std::string_view name, const std::string& value) {
  return std::string(name) + "=\"" + escape_label_value(value) + "\"";
}

// Per pool gauges and counters: name, type, help, and how to read the value.
struct PoolFigure {
  const char* name;
  const char* type;
  const char* help;
  uint64_t (*read)(const PoolSnapshot&);
};

constexpr PoolFigure kPoolFigures[] = {
    {"pgmux_transactions_total", "counter", "Transactions completed (ReadyForQuery idle).",
     [](const PoolSnapshot& p) { return p.stats.totals.xact_count; }},
    {"pgmux_queries_total", "counter", "Requests answered (each ReadyForQuery).",
     [](const PoolSnapshot& p) { return p.stats.totals.query_count; }},
    {"pgmux_received_bytes_total", "counter", "Bytes received from clients for servers.",
     [](const PoolSnapshot& p) { return p.stats.totals.received; }},
    {"pgmux_sent_bytes_total", "counter", "Bytes sent from servers to clients.",
     [](const PoolSnapshot& p) { return p.stats.totals.sent; }},
    {"pgmux_server_assignments_total", "counter", "Servers handed to clients.",
     [](const PoolSnapshot& p) { return p.stats.totals.server_assignment_count; }},
    {"pgmux_server_connects_total", "counter", "Server logins that succeeded.",
     [](const PoolSnapshot& p) { return p.stats.server_connects; }},
    {"pgmux_server_connect_retries_total", "counter",
     "Server connects attempted while backing off from a failure.",
     [](const PoolSnapshot& p) { return p.stats.retries; }},
    {"pgmux_queue_timeouts_total", "counter",
     "Requests that waited query_wait_timeout for a server and got 53300.",
     [](const PoolSnapshot& p) { return p.stats.queue_timeouts; }},
};

constexpr const char* kFailureReasons[] = {"too_many_clients", "supavisor", "unavailable",
                                           "unreachable", "auth"};
static_assert(std::size(kFailureReasons) == static_cast<size_t>(ConnectFailure::kCount));

void render_process(Writer& w, const ProcessSnapshot& p) {
  if (!p.known) return;
  w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time in seconds.");
  w.sample("process_cpu_seconds_total", "", number(p.cpu_seconds));
  w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  w.sample("process_resident_memory_bytes", "", p.resident_bytes);
  w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  w.sample("process_virtual_memory_bytes", "", p.virtual_bytes);
  w.family("process_open_fds", "gauge", "Number of open file descriptors.");
  w.sample("process_open_fds", "", p.open_fds);
  w.family("process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
  w.sample("process_start_time_seconds", "", number(p.start_time_seconds));
}

}  // namespace

std::string escape_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string render_metrics(const MetricsSnapshot& snapshot) {
  std::string out;
  out.reserve(4096 + snapshot.pools.size() * 8192);
  Writer w(out);
  w.family("pgmux_up", "gauge", "1 while pgmux serves (the loop answered this scrape).");
  w.sample("pgmux_up", "", 1);
  w.family("pgmux_build_info", "gauge", "pgmux's version, as a label; always 1.");
  w.sample("pgmux_build_info", label("version", snapshot.version), 1);

  std::vector<std::string> labels;
  labels.reserve(snapshot.pools.size());
  for (const PoolSnapshot& pool : snapshot.pools)
    labels.push_back(label("database", pool.database));

  w.family("pgmux_clients", "gauge",
           "Logged-in clients: active (with a server), waiting (queued for one), idle.");
  for (size_t i = 0; i < snapshot.pools.size(); ++i) {
    const PoolSnapshot& pool = snapshot.pools[i];
    w.sample("pgmux_clients", labels[i] + ",state=\"active\"", pool.clients_active);
    w.sample("pgmux_clients", labels[i] + ",state=\"waiting\"", pool.clients_waiting);
    w.sample("pgmux_clients", labels[i] + ",state=\"idle\"", pool.clients_idle);
  }
  w.family("pgmux_servers", "gauge",
           "Server connections: active (lent), idle, opening (connecting or logging in), "
           "checking (idle check).");
  for (size_t i = 0; i < snapshot.pools.size(); ++i) {
    const PoolSnapshot& pool = snapshot.pools[i];
    w.sample("pgmux_servers", labels[i] + ",state=\"active\"", pool.servers_active);
    w.sample("pgmux_servers", labels[i] + ",state=\"idle\"", pool.servers_idle);
    w.sample("pgmux_servers", labels[i] + ",state=\"opening\"", pool.servers_opening);
    w.sample("pgmux_servers", labels[i] + ",state=\"checking\"", pool.servers_checking);
  }
  for (const PoolFigure& figure : kPoolFigures) {
    w.family(figure.name, figure.type, figure.help);
    for (size_t i = 0; i < snapshot.pools.size(); ++i) {
      w.sample(figure.name, labels[i], figure.read(snapshot.pools[i]));
    }
  }
  w.family("pgmux_server_connect_failures_total", "counter",
           "Server connects or logins that failed, by reason.");
  for (size_t i = 0; i < snapshot.pools.size(); ++i) {
    for (size_t r = 0; r < std::size(kFailureReasons); ++r) {
      w.sample("pgmux_server_connect_failures_total",
               labels[i] + ",reason=\"" + kFailureReasons[r] + "\"",
               snapshot.pools[i].stats.connect_failures[r]);
    }
  }
  struct HistogramFigure {
    const char* name;
    const char* help;
    const Histogram PoolStats::*member;
  };
  static constexpr HistogramFigure kHistograms[] = {
      {"pgmux_queue_wait_seconds",
       "Time from a request's arrival to a server assigned (0 when one was idle).",
       &PoolStats::queue_wait},
      {"pgmux_transaction_duration_seconds",
       "Transactions, from the first request to ReadyForQuery idle.", &PoolStats::xact_time},
      {"pgmux_server_connect_duration_seconds", "Server connect and login time.",
       &PoolStats::connect_time},
  };
  for (const HistogramFigure& figure : kHistograms) {
    w.family(figure.name, "histogram", figure.help);
    for (size_t i = 0; i < snapshot.pools.size(); ++i) {
      w.histogram(figure.name, labels[i], snapshot.pools[i].stats.*figure.member);
    }
  }

  std::vector<std::string> upstream_labels;
  upstream_labels.reserve(snapshot.upstreams.size());
  for (const UpstreamSnapshot& up : snapshot.upstreams) {
    upstream_labels.push_back(label("upstream", up.endpoint));
  }
  // One sample per upstream, of one figure.
  struct UpstreamFigure {
    const char* name;
    const char* type;
    const char* help;
    uint64_t (*value)(const UpstreamSnapshot& up, uint64_t now);
  };
  static constexpr UpstreamFigure kUpstreamFigures[] = {
      {"pgmux_server_cap", "gauge",
       "max_server_connections: the most server connections to the upstream.",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.cap; }},
      {"pgmux_servers_pinned", "gauge", "Server connections pinned to one client.",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.pinned; }},
      {"pgmux_server_limit", "gauge",
       "The cap pgmux holds itself to now: max_server_connections, or lower while the "
       "upstream's budget is full and shared (budget_sharing = adaptive).",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.limit; }},
      {"pgmux_upstream_servers", "gauge",
       "Server connections to the upstream, open or opening, of every pool.",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.open; }},
      {"pgmux_budget_contended", "gauge",
       "1 for 30 s after a capacity refusal or a survey that found the upstream's budget full "
       "and shared.",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.contended ? 1 : 0; }},
      {"pgmux_budget_limit_decreases_total", "counter",
       "Times a capacity refusal lowered the limit.",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.limit_decreases; }},
      {"pgmux_budget_yields_total", "counter",
       "Times pgmux, holding the whole budget at its cap, gave a server back for a newcomer.",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.yields; }},
      {"pgmux_budget_surveys_total", "counter",
       "Budget surveys answered (pg_stat_activity and pg_roles, on an idle server).",
       [](const UpstreamSnapshot& up, uint64_t) -> uint64_t { return up.surveys; }},
      {"pgmux_upstream_reached", "gauge",
       "1 when a server is logged in or pgmux connected to the upstream in the last 30 s.",
       [](const UpstreamSnapshot& up, uint64_t now) -> uint64_t {
         return reached(up, now) ? 1 : 0;
       }},
  };
  for (const UpstreamFigure& figure : kUpstreamFigures) {
    w.family(figure.name, figure.type, figure.help);
    for (size_t i = 0; i < snapshot.upstreams.size(); ++i) {
      w.sample(figure.name, upstream_labels[i], figure.value(snapshot.upstreams[i], snapshot.now));
    }
  }
  render_process(w, snapshot.process);
  return out;
}

bool reached(const UpstreamSnapshot& upstream, uint64_t now) {
  if (upstream.logged_in > 0) return true;
  return upstream.last_reached != 0 && now <= upstream.last_reached + kReachWindowMs;
}

std::string not_ready_reason(const ReadyState& state,
                             const std::vector<UpstreamSnapshot>& upstreams, uint64_t now) {
  if (!state.listening) return "not listening";
  if (state.draining) return "draining: shutting down";
  if (state.paused) return "paused";
  for (const UpstreamSnapshot& up : upstreams) {
    if (reached(up, now)) continue;
    if (up.last_reached == 0) {
      return "upstream " + up.endpoint + " not reached yet" +
             (up.last_error.empty() ? "" : ": " + up.last_error);
    }
    return "upstream " + up.endpoint + " not reached for " +
           std::to_string((now - up.last_reached) / 1000) + " s" +
           (up.last_error.empty() ? "" : ": " + up.last_error);
  }
  return {};
}

ProcessSnapshot read_process_snapshot() {
  ProcessSnapshot p;
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // The command name in parentheses may hold spaces; fields count from after it.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return p;
  std::istringstream fields(stat.substr(close + 2));
  // Field 3 (state) is the first after the name; utime is 14, stime 15,
  // starttime 22, vsize 23, rss 24 (proc(5)).
  std::vector<std::string> values;
  for (std::string value; fields >> value && values.size() < 22;) values.push_back(value);
  if (values.size() < 22) return p;
  bool parsed = true;
  const auto field = [&](int n) { return to_u64(values[static_cast<size_t>(n - 3)], parsed); };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  p.cpu_seconds = static_cast<double>(field(14) + field(15)) / ticks;
  p.virtual_bytes = field(23);
  p.resident_bytes = field(24) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  // starttime counts ticks since boot; btime in /proc/stat is the boot time.
  std::ifstream proc_stat("/proc/stat");
  uint64_t boot = 0;
  for (std::string line; std::getline(proc_stat, line);) {
    if (line.rfind("btime ", 0) == 0) boot = to_u64(line.substr(6), parsed);
  }
  if (!parsed) return p;
  p.start_time_seconds = static_cast<double>(boot) + static_cast<double>(field(22)) / ticks;
  if (DIR* dir = opendir("/proc/self/fd")) {
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++p.open_fds;
    }
    closedir(dir);
    if (p.open_fds > 0) --p.open_fds;  // The directory's own descriptor.
  }
  p.known = true;
  return p;
}

}  // namespace pgmux::proxy
