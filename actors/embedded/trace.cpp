#include "actors/embedded/trace.hpp"

#include "transport/files.hpp"
#include "transport/json.hpp"
#include "transport/workflow_job.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace ghscale::scenario {

namespace {

caf::error fail(const std::string& where, const std::string& what) {
  return caf::make_error(errc::invalid_config, where + ": " + what);
}

/// The longest time a trace may name: a year of simulated time is far more
/// than any trace replays, and far less than a timespan holds.
constexpr double max_trace_seconds = 365.0 * 24 * 3600;

/// Seconds (a JSON number) as a timespan; false if not a number within
/// [0, max_trace_seconds].
bool seconds(const rapidjson::Value& v, caf::timespan& out) {
  if (!v.IsNumber() || !(v.GetDouble() >= 0 && v.GetDouble() <= max_trace_seconds))
    return false;
  out = caf::timespan{static_cast<int64_t>(v.GetDouble() * 1e9)};
  return true;
}

/// How deep a trace line may nest: a job event is a few levels deep, and
/// writing the event back out (Accept) recurses once per level.
constexpr size_t max_trace_depth = 32;

caf::error parse_fault(const rapidjson::Value& v, const std::string& where,
                       sim_fault& out) {
  if (!v.IsObject())
    return fail(where, "fault must be an object");
  for (auto& m : v.GetObject()) {
    std::string key = m.name.GetString();
    if (key == "kind" && m.value.IsString())
      out.kind = m.value.GetString();
    else if (key == "instance_type" && m.value.IsString())
      out.instance_type = m.value.GetString();
    else if (key == "rate" && m.value.IsNumber())
      out.rate = m.value.GetDouble();
    else if (key == "duration" && seconds(m.value, out.duration))
      continue;
    else
      return fail(where, "bad fault field '" + key + "'");
  }
  static const char* kinds[] = {"github_5xx", "github_404", "github_rate_limit",
                                "ec2_capacity", "ec2_spot_capacity",
                                "ec2_partial", "ec2_throttle",
                                "spot_interruption"};
  if (std::find(std::begin(kinds), std::end(kinds), out.kind) == std::end(kinds))
    return fail(where, "unknown fault kind '" + out.kind + "'");
  if (out.rate < 0 || out.rate > 1)
    return fail(where, "fault rate must be within [0, 1]");
  return caf::none;
}

caf::error parse_line(const std::string& line, const std::string& where,
                      trace_entry& out) {
  if (json_depth_over(line, max_trace_depth))
    return fail(where, "nested deeper than " + std::to_string(max_trace_depth) + " levels");
  rapidjson::Document doc;
  parse_outside_json(doc, line);
  if (doc.HasParseError() || !doc.IsObject())
    return fail(where, "not a JSON object");
  if (!doc.HasMember("at") || !seconds(doc["at"], out.at))
    return fail(where, "missing \"at\", or not seconds within a year");
  if (doc.HasMember("event")) {
    out.what = trace_entry::kind::job;
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> writer{buf};
    doc["event"].Accept(writer);
    out.job.body = buf.GetString();
    auto ev = parse_job_event(out.job.body);
    if (!ev)
      return fail(where, "bad event: " + describe(ev.error()));
    if (ev->action != job_action::queued)
      return fail(where, "trace events must be queued jobs");
    out.job.event = std::move(*ev);
    if (doc.HasMember("run_for") && !seconds(doc["run_for"], out.job.run_for))
      return fail(where, "run_for must be seconds");
    if (doc.HasMember("duplicates")) {
      if (!doc["duplicates"].IsInt() || doc["duplicates"].GetInt() < 0)
        return fail(where, "duplicates must be a non-negative integer");
      out.job.duplicates = doc["duplicates"].GetInt();
    }
    return caf::none;
  }
  if (doc.HasMember("fault")) {
    out.what = trace_entry::kind::fault;
    return parse_fault(doc["fault"], where, out.fault);
  }
  if (doc.HasMember("crash") && doc["crash"].IsString()) {
    out.what = trace_entry::kind::crash;
    out.child = doc["crash"].GetString();
    return caf::none;
  }
  if (doc.HasMember("kill_loop") && doc["kill_loop"].IsString()) {
    out.what = trace_entry::kind::kill_loop;
    out.queue = doc["kill_loop"].GetString();
    return caf::none;
  }
  if (doc.HasMember("restart") && doc["restart"].IsTrue()) {
    out.what = trace_entry::kind::restart;
    return caf::none;
  }
  return fail(where, "expected \"event\", \"fault\", \"crash\", \"kill_loop\""
                     " or \"restart\"");
}

} // namespace

caf::expected<std::vector<trace_entry>> parse_trace(const std::string& text,
                                                    const std::string& source) {
  std::vector<trace_entry> entries;
  std::istringstream in{text};
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    if (line.find_first_not_of(" \t\r") == std::string::npos)
      continue;
    trace_entry entry;
    if (auto err = parse_line(line, source + ":" + std::to_string(lineno), entry))
      return err;
    entries.push_back(std::move(entry));
  }
  std::stable_sort(entries.begin(), entries.end(),
                   [](auto& a, auto& b) { return a.at < b.at; });
  return entries;
}

caf::expected<std::vector<trace_entry>> load_trace_file(const std::string& path) {
  auto text = read_file(path);
  if (!text)
    return caf::make_error(errc::invalid_config, path + ": cannot read trace");
  return parse_trace(*text, path);
}

} // namespace ghscale::scenario
