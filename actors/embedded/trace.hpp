#pragma once
// Workload traces for `ghscale simulate`: JSON lines of timed events (format
// documented in conf/traces/generate.py). Pure parsing, no actors.
#include "messages/types.hpp"

#include <caf/expected.hpp>

#include <string>
#include <vector>

namespace ghscale::scenario {

struct trace_entry {
  /// `restart`: the node drains (SIGTERM) and a new one starts on the same
  /// world, as systemd would restart the service; only `ghscale simulate`
  /// replays it.
  enum class kind { job, fault, crash, kill_loop, restart };
  caf::timespan at{0}; // since the start of the simulation
  kind what = kind::job;
  sim_job job;         // kind::job: the parsed event and its delivery body
  sim_fault fault;     // kind::fault
  std::string child;   // kind::crash: the supervised child to kill
  std::string queue;   // kind::kill_loop: one of its poll loops is killed
};

/// Parses a trace; errors name the source and line. Entries come back in
/// time order (stable for equal times).
caf::expected<std::vector<trace_entry>> parse_trace(const std::string& text,
                                                    const std::string& source);

caf::expected<std::vector<trace_entry>> load_trace_file(const std::string& path);

} // namespace ghscale::scenario
