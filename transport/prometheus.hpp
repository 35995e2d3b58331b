#pragma once
// The metrics registry in Prometheus' text exposition format 0.0.4. Pure:
// actors/ops_server.* serves the text on GET /metrics.
#include "actors/metrics.hpp"

#include <string>

namespace ghscale {

/// The Content-Type of the rendered page.
inline constexpr const char* prometheus_content_type =
  "text/plain; version=0.0.4; charset=utf-8";

/// Every series in `registry`, grouped into families sorted by name, each
/// with one `# HELP` and one `# TYPE` line: counters as `<name>_total`,
/// gauges, and histograms as cumulative `_bucket{le=...}` (ending with
/// `le="+Inf"`), `_sum` and `_count`.
std::string render_prometheus(const metrics& registry);

/// The HELP text of a family (a generic one for names not in the table).
std::string metric_help(const std::string& family);

} // namespace ghscale
