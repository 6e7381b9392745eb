#include "bench/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>

namespace pgmux::bench {
namespace {

constexpr double kWidth = 960;
constexpr double kPanelHeight = 300;
constexpr double kLeft = 90;  // Room for the y labels.
constexpr double kRight = 30;
constexpr double kTop = 40;     // Room for the panel title.
constexpr double kBottom = 50;  // Room for the x labels.
constexpr double kHeader = 50;

std::string num(double value) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", value);
  return buf;
}

// A tick label: integers without decimals, small values with a few.
std::string label(double value) {
  char buf[32];
  if (std::fabs(value - std::round(value)) < 1e-9) {
    std::snprintf(buf, sizeof(buf), "%.0f", value);
  } else {
    std::snprintf(buf, sizeof(buf), "%g", value);
  }
  return buf;
}

// One plotting area: maps data coordinates to pixels and draws the frame.
class Panel {
 public:
  Panel(std::string& out, double y0, double x_low, double x_high, double y_low, double y_high)
      : out_(out),
        left_(kLeft),
        right_(kWidth - kRight),
        top_(y0 + kTop),
        bottom_(y0 + kPanelHeight - kBottom),
        x_low_(x_low),
        x_high_(x_high > x_low ? x_high : x_low + 1),
        y_low_(y_low),
        y_high_(y_high > y_low ? y_high : y_low + 1) {}

  double x(double value) const {
    return left_ + (value - x_low_) / (x_high_ - x_low_) * (right_ - left_);
  }
  double y(double value) const {
    return bottom_ - (value - y_low_) / (y_high_ - y_low_) * (bottom_ - top_);
  }

  void frame(const std::string& title, const std::string& x_title, const std::string& y_title) {
    out_ += "<text x=\"" + num(left_) + "\" y=\"" + num(top_ - 14) + "\" class=\"title\">" +
            svg_escape(title) + "</text>\n";
    out_ += "<rect x=\"" + num(left_) + "\" y=\"" + num(top_) + "\" width=\"" +
            num(right_ - left_) + "\" height=\"" + num(bottom_ - top_) + "\" class=\"frame\"/>\n";
    out_ += "<text x=\"" + num((left_ + right_) / 2) + "\" y=\"" + num(bottom_ + 40) +
            "\" class=\"axis\" text-anchor=\"middle\">" + svg_escape(x_title) + "</text>\n";
    const double mid = (top_ + bottom_) / 2;
    out_ += "<text x=\"18\" y=\"" + num(mid) +
            "\" class=\"axis\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 18 " +
            num(mid) + ")\">" + svg_escape(y_title) + "</text>\n";
  }

  void x_tick(double value, const std::string& text) {
    const double px = x(value);
    out_ += "<line x1=\"" + num(px) + "\" y1=\"" + num(top_) + "\" x2=\"" + num(px) + "\" y2=\"" +
            num(bottom_) + "\" class=\"grid\"/>\n";
    out_ += "<text x=\"" + num(px) + "\" y=\"" + num(bottom_ + 18) +
            "\" class=\"tick\" text-anchor=\"middle\">" + svg_escape(text) + "</text>\n";
  }
  void y_tick(double value, const std::string& text) {
    const double py = y(value);
    out_ += "<line x1=\"" + num(left_) + "\" y1=\"" + num(py) + "\" x2=\"" + num(right_) +
            "\" y2=\"" + num(py) + "\" class=\"grid\"/>\n";
    out_ += "<text x=\"" + num(left_ - 8) + "\" y=\"" + num(py + 4) +
            "\" class=\"tick\" text-anchor=\"end\">" + svg_escape(text) + "</text>\n";
  }

  void line(const std::vector<std::pair<double, double>>& points, const std::string& color) {
    if (points.empty()) return;
    out_ += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\" points=\"";
    for (const auto& [px, py] : points) out_ += num(x(px)) + "," + num(y(py)) + " ";
    out_ += "\"/>\n";
    if (points.size() == 1) {
      out_ += "<circle cx=\"" + num(x(points[0].first)) + "\" cy=\"" + num(y(points[0].second)) +
              "\" r=\"3\" fill=\"" + color + "\"/>\n";
    }
  }

  void legend(int row, const std::string& text, const std::string& color) {
    const double ly = top_ + 18 + row * 18;
    out_ += "<rect x=\"" + num(right_ - 130) + "\" y=\"" + num(ly - 9) +
            "\" width=\"14\" height=\"4\" fill=\"" + color + "\"/>\n";
    out_ += "<text x=\"" + num(right_ - 110) + "\" y=\"" + num(ly) + "\" class=\"tick\">" +
            svg_escape(text) + "</text>\n";
  }

  void note(const std::string& text) {
    out_ += "<text x=\"" + num((left_ + right_) / 2) + "\" y=\"" + num((top_ + bottom_) / 2) +
            "\" class=\"axis\" text-anchor=\"middle\">" + svg_escape(text) + "</text>\n";
  }

 private:
  std::string& out_;
  double left_, right_, top_, bottom_;
  double x_low_, x_high_, y_low_, y_high_;
};

// "1 us", "10 us", ..., "1 ms", ..., "10 s": a power of ten of microseconds.
std::string decade_label(int power) {
  static constexpr const char* kUnits[] = {"us", "ms", "s"};
  const int unit = std::clamp(power / 3, 0, 2);
  int value = 1;
  for (int i = 0; i < power - unit * 3; ++i) value *= 10;
  return std::to_string(value) + " " + kUnits[unit];
}

double max_of(const std::vector<Interval>& timeline, double (*get)(const Interval&)) {
  double m = 0;
  for (const Interval& i : timeline) m = std::max(m, get(i));
  return m;
}

void throughput_panel(std::string& out, const Results& r, double y0) {
  const double t_max = r.timeline.empty() ? 1 : r.timeline.back().t;
  const double tps_max = max_of(r.timeline, [](const Interval& i) { return i.tps; });
  const std::vector<double> yt = nice_ticks(0, tps_max > 0 ? tps_max : 1, 5);
  const std::vector<double> xt = nice_ticks(0, t_max * 0.995, 8);
  Panel p(out, y0, 0, std::max(t_max, xt.back()), 0, yt.back());
  p.frame("Throughput", "seconds", "transactions per second");
  for (double v : xt) p.x_tick(v, label(v));
  for (double v : yt) p.y_tick(v, label(v));
  if (r.timeline.empty()) {
    p.note("no progress intervals");
    return;
  }
  std::vector<std::pair<double, double>> points;
  for (const Interval& i : r.timeline) points.emplace_back(i.t, i.tps);
  p.line(points, "#1f77b4");
}

void latency_time_panel(std::string& out, const Results& r, double y0) {
  const double t_max = r.timeline.empty() ? 1 : r.timeline.back().t;
  const double ms_max =
      max_of(r.timeline, [](const Interval& i) { return static_cast<double>(i.p99_us) / 1000; });
  const std::vector<double> yt = nice_ticks(0, ms_max > 0 ? ms_max : 1, 5);
  const std::vector<double> xt = nice_ticks(0, t_max * 0.995, 8);
  Panel p(out, y0, 0, std::max(t_max, xt.back()), 0, yt.back());
  p.frame("Latency over time", "seconds", "milliseconds");
  for (double v : xt) p.x_tick(v, label(v));
  for (double v : yt) p.y_tick(v, label(v));
  if (r.timeline.empty()) {
    p.note("no progress intervals");
    return;
  }
  std::vector<std::pair<double, double>> p50, p99;
  for (const Interval& i : r.timeline) {
    if (i.transactions == 0) continue;
    p50.emplace_back(i.t, static_cast<double>(i.p50_us) / 1000);
    p99.emplace_back(i.t, static_cast<double>(i.p99_us) / 1000);
  }
  p.line(p99, "#d62728");
  p.line(p50, "#2ca02c");
  p.legend(0, "p99", "#d62728");
  p.legend(1, "p50", "#2ca02c");
}

// x: the number of nines, -log10(1 - fraction); y: log10 of microseconds.
void distribution_panel(std::string& out, const Results& r, double y0) {
  const Histogram& h = r.latency;
  const double nines_max = std::clamp(
      std::ceil(std::log10(std::max<double>(static_cast<double>(h.count()), 10))), 1.0, 5.0);
  const double low = std::floor(std::log10(std::max<double>(static_cast<double>(h.min()), 1)));
  double high = std::ceil(std::log10(std::max<double>(static_cast<double>(h.max()), 1)));
  if (high <= low) high = low + 1;
  Panel p(out, y0, 0, nines_max, low, high);
  p.frame("Latency distribution (" + std::to_string(h.count()) + " transactions)", "percentile",
          "latency (log scale)");
  static constexpr const char* kNames[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
  for (int n = 0; n <= static_cast<int>(nines_max); ++n) p.x_tick(n, kNames[n]);
  for (double d = low; d <= high; d += 1) p.y_tick(d, decade_label(static_cast<int>(d)));
  if (h.count() == 0) {
    p.note("no transactions");
    return;
  }
  std::vector<std::pair<double, double>> points;
  auto nines = [&](double fraction) {
    return fraction >= 1 ? nines_max : std::min(nines_max, -std::log10(1 - fraction));
  };
  auto log_us = [](uint64_t us) {
    return std::log10(std::max<double>(static_cast<double>(us), 1));
  };
  double previous = 0;
  for (const Histogram::Point& point : h.distribution()) {
    // A step: the value holds from the previous fraction up to this one.
    points.emplace_back(nines(previous), log_us(point.value));
    points.emplace_back(nines(point.fraction), log_us(point.value));
    previous = point.fraction;
  }
  p.line(points, "#9467bd");
}

}  // namespace

std::vector<double> nice_ticks(double low, double high, int count) {
  if (!(high > low)) high = low + 1;
  const double raw = (high - low) / std::max(count, 1);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  double step = power * 10;
  for (double m : {1.0, 2.0, 5.0}) {
    if (power * m >= raw) {
      step = power * m;
      break;
    }
  }
  std::vector<double> ticks;
  const double first = std::floor(low / step) * step;
  for (int i = 0; i < 1000; ++i) {
    const double v = first + i * step;
    ticks.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
    if (v >= high - step * 1e-9) break;
  }
  return ticks;
}

std::string svg_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string svg_plot(const Results& r) {
  const double height = kHeader + 3 * kPanelHeight;
  std::string out;
  out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(kWidth) + "\" height=\"" +
         num(height) + "\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) + "\">\n";
  out +=
      "<style>text{font-family:sans-serif;fill:#222}.title{font-size:15px;font-weight:bold}"
      ".axis{font-size:13px}.tick{font-size:11px}.frame{fill:none;stroke:#444}"
      ".grid{stroke:#ddd;stroke-width:1}</style>\n";
  out += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  char head[256];
  std::snprintf(head, sizeof(head), "pgmux-bench %s: %d clients, %.1f s, %.1f tps, %llu errors",
                r.scenario.c_str(), r.clients, r.duration_s, r.tps(),
                static_cast<unsigned long long>(r.errors.total()));
  out +=
      "<text x=\"" + num(kLeft) + "\" y=\"30\" class=\"title\">" + svg_escape(head) + "</text>\n";
  throughput_panel(out, r, kHeader);
  latency_time_panel(out, r, kHeader + kPanelHeight);
  distribution_panel(out, r, kHeader + 2 * kPanelHeight);
  out += "</svg>\n";
  return out;
}

}  // namespace pgmux::bench
