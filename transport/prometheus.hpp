#pragma once
// Metric series in Prometheus' text exposition format 0.0.4. Pure: the
// ops server (actors/ops/ops_server) renders its registry's snapshot on
// GET /metrics.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ghscale {

/// The Content-Type of the rendered page.
inline constexpr const char* prometheus_content_type =
  "text/plain; version=0.0.4; charset=utf-8";

/// Cumulative histogram buckets, as a registry keeps them.
struct metric_histogram {
  std::vector<double> bounds;   // upper bounds, ascending
  std::vector<int64_t> buckets; // cumulative counts per bound
  int64_t count = 0;
  double sum = 0;
};

/// Every series of a registry at one moment, keyed by
/// "name{k=\"v\",...}" with labels sorted.
struct metric_snapshot {
  std::vector<std::pair<std::string, int64_t>> counters;
  std::vector<std::pair<std::string, double>> gauges;
  std::vector<std::pair<std::string, metric_histogram>> histograms;
};

/// Every series of `registry`, grouped into families sorted by name, each
/// with one `# HELP` and one `# TYPE` line: counters as `<name>_total`,
/// gauges, and histograms as cumulative `_bucket{le=...}` (ending with
/// `le="+Inf"`), `_sum` and `_count`.
std::string render_prometheus(const metric_snapshot& registry);

/// The HELP text of a family (a generic one for names not in the table).
std::string metric_help(const std::string& family);

} // namespace ghscale
