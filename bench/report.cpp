#include "bench/report.h"

#include <cinttypes>
#include <cstdio>
#include <string_view>

namespace pgmux::bench {
namespace {

// snprintf into a std::string.
template <typename... Args>
std::string format(const char* fmt, Args... args) {
  char buf[256];
  const int n = std::snprintf(buf, sizeof(buf), fmt, args...);
  if (n < 0) return {};
  if (static_cast<size_t>(n) < sizeof(buf)) return std::string(buf, static_cast<size_t>(n));
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), fmt, args...);
  out.resize(static_cast<size_t>(n));
  return out;
}

// A JSON number: finite, at most `decimals` decimals.
std::string json_number(double value, int decimals) {
  if (!(value == value) || value > 1e300 || value < -1e300) return "0";
  return format("%.*f", decimals, value);
}

std::string json_uint(uint64_t value) { return format("%" PRIu64, value); }

}  // namespace

std::string format_us(double us) {
  if (us < 1000) return format("%.0f us", us);
  if (us < 1'000'000) return format("%.2f ms", us / 1000);
  return format("%.2f s", us / 1'000'000);
}

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += format("\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string summary_text(const Results& r) {
  std::string out;
  out += "scenario:            " + r.scenario;
  if (r.scenario == "select" || r.scenario == "tpcb") out += " (" + r.protocol + " protocol)";
  out += "\n";
  out += format("clients:             %d\n", r.clients);
  if (r.rate > 0) out += format("target rate:         %.1f tps (open loop)\n", r.rate);
  out +=
      format("duration:            %.2f s (after %.2f s connecting)\n", r.duration_s, r.connect_s);
  out += format("transactions:        %" PRIu64 "\n", r.transactions);
  out += format("tps:                 %.1f\n", r.tps());
  const Histogram& l = r.latency;
  if (l.count() > 0) {
    out += "latency:             mean " + format_us(l.mean()) + "  p50 " +
           format_us(static_cast<double>(l.percentile(50))) + "  p90 " +
           format_us(static_cast<double>(l.percentile(90))) + "  p99 " +
           format_us(static_cast<double>(l.percentile(99))) + "  p99.9 " +
           format_us(static_cast<double>(l.percentile(99.9))) + "  max " +
           format_us(static_cast<double>(l.max())) + "\n";
  }
  const Histogram& c = r.connect;
  out += format("connections:         %d open at the end, %" PRIu64 " handshakes, %" PRIu64
                " failed\n",
                r.connected, c.count(), r.connect_failures);
  if (c.count() > 0) {
    out += "connect time:        mean " + format_us(c.mean()) + "  p50 " +
           format_us(static_cast<double>(c.percentile(50))) + "  p99 " +
           format_us(static_cast<double>(c.percentile(99))) + "  max " +
           format_us(static_cast<double>(c.max())) + "\n";
  }
  out += format("errors:              %" PRIu64 "\n", r.errors.total());
  out += format("capacity errors:     %" PRIu64 "%s\n", r.errors.capacity(),
                r.errors.capacity() > 0 ? "  <-- the server or pooler refused clients" : "");
  for (const ErrorKind& kind : r.errors.kinds()) {
    out += format("  %10" PRIu64 "  %-5s  %s%s\n", kind.count,
                  kind.sqlstate.empty() ? "-" : kind.sqlstate.c_str(), kind.message.c_str(),
                  kind.capacity ? "  [capacity]" : "");
  }
  return out;
}

std::string json_text(const Results& r) {
  const Histogram& l = r.latency;
  const Histogram& c = r.connect;
  std::string out = "{";
  out += "\"scenario\":" + json_string(r.scenario);
  out += ",\"protocol\":" + json_string(r.protocol);
  out += ",\"clients\":" + std::to_string(r.clients);
  out += ",\"rate\":" + json_number(r.rate, 1);
  out += ",\"duration_s\":" + json_number(r.duration_s, 3);
  out += ",\"connect_s\":" + json_number(r.connect_s, 3);
  out += ",\"transactions\":" + json_uint(r.transactions);
  out += ",\"tps\":" + json_number(r.tps(), 1);
  out += ",\"errors\":" + json_uint(r.errors.total());
  out += ",\"capacity_errors\":" + json_uint(r.errors.capacity());
  out += ",\"errors_by_kind\":[";
  bool first = true;
  for (const ErrorKind& kind : r.errors.kinds()) {
    if (!first) out += ",";
    first = false;
    out += "{\"sqlstate\":" + json_string(kind.sqlstate) +
           ",\"message\":" + json_string(kind.message) + ",\"count\":" + json_uint(kind.count) +
           ",\"capacity\":" + (kind.capacity ? "true" : "false") + "}";
  }
  out += "]";
  out += ",\"connected\":" + std::to_string(r.connected);
  out += ",\"connect_failures\":" + json_uint(r.connect_failures);
  out += ",\"latency_us\":{\"mean\":" + json_number(l.mean(), 1) +
         ",\"p50\":" + json_uint(l.percentile(50)) + ",\"p90\":" + json_uint(l.percentile(90)) +
         ",\"p99\":" + json_uint(l.percentile(99)) + ",\"p999\":" + json_uint(l.percentile(99.9)) +
         ",\"max\":" + json_uint(l.max()) + "}";
  out += ",\"connect_us\":{\"p50\":" + json_uint(c.percentile(50)) +
         ",\"p99\":" + json_uint(c.percentile(99)) + ",\"max\":" + json_uint(c.max()) + "}";
  out += ",\"timeline\":[";
  first = true;
  for (const Interval& i : r.timeline) {
    if (!first) out += ",";
    first = false;
    out += "{\"t\":" + json_number(i.t, 3) + ",\"tps\":" + json_number(i.tps, 1) +
           ",\"p50_us\":" + json_uint(i.p50_us) + ",\"p99_us\":" + json_uint(i.p99_us) +
           ",\"errors\":" + json_uint(i.errors) + ",\"connected\":" + std::to_string(i.connected) +
           "}";
  }
  out += "]}";
  return out;
}

std::string progress_line(const Interval& i, int clients) {
  return format("%7.1f s %9.0f tps  p50 %-9s p99 %-9s %6" PRIu64 " errors  %d/%d connected", i.t,
                i.tps, format_us(static_cast<double>(i.p50_us)).c_str(),
                format_us(static_cast<double>(i.p99_us)).c_str(), i.errors, i.connected, clients);
}

}  // namespace pgmux::bench
