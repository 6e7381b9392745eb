// The --plot picture: a self-contained SVG document (no scripts, fonts or
// external references) with three panels: throughput over time, p50 and p99
// latency over time, and the latency distribution by percentile.
#pragma once

#include <string>
#include <vector>

#include "bench/report.h"

namespace pgmux::bench {

std::string svg_plot(const Results& results);

// Round tick values covering [low, high]: steps of 1, 2 or 5 times a power
// of ten, about `count` of them. Exposed for the tests.
std::vector<double> nice_ticks(double low, double high, int count);

// Escapes &, <, > and " for SVG text and attributes.
std::string svg_escape(std::string_view text);

}  // namespace pgmux::bench
