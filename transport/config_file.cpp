#include "transport/config_file.hpp"

#include "transport/config_files.hpp"
#include "transport/http_server.hpp"

#include "transport/files.hpp"
#include "transport/idle_schedule.hpp"
#include "transport/url.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace ghscale {

namespace {

// -- spelled-out enum values ---------------------------------------------------
// One table per choice, shared by the reader and the writer so a value always
// renders the way it parses.

template <class T>
using choices = std::initializer_list<std::pair<const char*, T>>;

const choices<backend_kind> backend_names = {
  {"embedded", backend_kind::embedded}, {"remote", backend_kind::remote}};
const choices<label_match> match_names = {{"exact", label_match::exact},
                                          {"subset", label_match::subset}};
const choices<runner_mode> mode_names = {{"ephemeral", runner_mode::ephemeral},
                                         {"reusable", runner_mode::reusable}};
const choices<capacity_type> capacity_names = {
  {"spot", capacity_type::spot}, {"on-demand", capacity_type::on_demand}};
// pool_config::org_level is spelled `level = "org" | "repo"` in the file.
const choices<bool> level_names = {{"org", true}, {"repo", false}};

const std::set<std::string> log_levels = {"trace", "debug", "info",
                                          "warn",  "error", "off"};
const std::set<std::string> log_formats = {"logfmt", "json"};

template <class T>
std::string choice_list(const choices<T>& options) {
  std::string result;
  for (auto& [name, value] : options)
    result += (result.empty() ? "\"" : ", \"") + std::string{name} + "\"";
  return result;
}

template <class T>
const char* choice_name(const choices<T>& options, T value) {
  for (auto& [name, candidate] : options)
    if (candidate == value)
      return name;
  throw std::logic_error("config_file: value missing from its choice table");
}

// -- where things are, and what is wrong with them -----------------------------

struct position {
  uint32_t line = 1;
  uint32_t column = 1;
  friend bool operator<(const position& a, const position& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  }
};

position position_of(const toml::source_region& region) {
  return {region.begin.line, region.begin.column};
}

/// The key path one level up: "pools[0].labels" -> "pools[0]" -> "pools" -> "".
std::string parent_path(const std::string& path) {
  auto cut = path.find_last_of(".[");
  return cut == std::string::npos ? std::string{} : path.substr(0, cut);
}

std::string child_path(const std::string& table, const std::string& key) {
  return table.empty() ? key : table + "." + key;
}

std::string element_path(const std::string& list, size_t index) {
  return list + "[" + std::to_string(index) + "]";
}

/// Collects errors, and remembers where every key of the file sits, so the
/// checks that run after parsing still point at the line to fix. An error
/// about a key the file does not set points at the table that lacks it.
class diagnostics {
public:
  explicit diagnostics(std::string source) : source_(std::move(source)) {
    where_.emplace("", position{});
  }

  void note(const std::string& path, position where) {
    where_.emplace(path, where);
  }

  bool is_set(const std::string& path) const {
    return where_.count(path) > 0;
  }

  void error_at(position where, std::string text) {
    found_.push_back({where, std::move(text)});
  }

  /// An error about `path`: "FILE:LINE:COL: PATH: WHAT".
  void error(const std::string& path, const std::string& what) {
    auto at = path;
    while (!is_set(at))
      at = parent_path(at);
    error_at(where_.at(at), path + ": " + what);
  }

  void require(bool ok, const std::string& path, const std::string& what) {
    if (!ok)
      error(path, what);
  }

  bool empty() const noexcept {
    return found_.empty();
  }

  /// All errors in file order, one per line.
  caf::error to_error() {
    std::stable_sort(found_.begin(), found_.end(),
                     [](auto& a, auto& b) { return a.where < b.where; });
    std::string text;
    for (auto& [where, what] : found_) {
      if (!text.empty())
        text += '\n';
      text += source_ + ":" + std::to_string(where.line) + ":"
              + std::to_string(where.column) + ": " + what;
    }
    return caf::make_error(errc::invalid_config, std::move(text));
  }

private:
  struct finding {
    position where;
    std::string what;
  };
  std::string source_;
  std::map<std::string, position> where_;
  std::vector<finding> found_;
};

// -- reading TOML values into fields -------------------------------------------

const char* kind_of(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
    case toml::node_type::none: break;
  }
  return "nothing";
}

/// Reads one value; on a mismatch reports it and leaves `out` unchanged.
class value_reader {
public:
  value_reader(const toml::node& node, std::string path, diagnostics& diag)
    : node_(node), path_(std::move(path)), diag_(diag) {
  }

  void read(std::string& out) {
    if (auto x = node_.as_string())
      out = x->get();
    else
      mismatch("a string");
  }

  void read(bool& out) {
    if (auto x = node_.as_boolean())
      out = x->get();
    else
      mismatch("a boolean");
  }

  template <class Int>
  std::enable_if_t<std::is_integral_v<Int>> read(Int& out) {
    auto x = node_.as_integer();
    if (!x)
      return mismatch("an integer");
    auto value = x->get();
    if constexpr (std::is_unsigned_v<Int>) {
      if (value < 0)
        return diag_.error(path_, "must be >= 0");
    } else {
      if (value < static_cast<int64_t>(std::numeric_limits<Int>::min())
          || value > static_cast<int64_t>(std::numeric_limits<Int>::max()))
        return diag_.error(path_,
                           "out of range (" + std::to_string(value) + ")");
    }
    out = static_cast<Int>(value);
  }

  void read(double& out) {
    // `refill = 5` is as much a number as `refill = 5.0`.
    double value;
    if (auto x = node_.as_floating_point())
      value = x->get();
    else if (auto y = node_.as_integer())
      value = static_cast<double>(y->get());
    else
      return mismatch("a number");
    if (!std::isfinite(value))
      return diag_.error(path_, "must be a finite number");
    out = value;
  }

  void read(caf::timespan& out) {
    auto x = node_.as_string();
    if (!x)
      return mismatch("a duration string such as \"20s\"");
    if (!parse_duration(x->get(), out))
      diag_.error(path_, "invalid duration \"" + x->get()
                           + "\" (expected e.g. \"250ms\", \"20s\", \"1h30m\")");
  }

  void read(std::vector<std::string>& out) {
    auto xs = node_.as_array();
    if (!xs)
      return mismatch("an array of strings");
    std::vector<std::string> result;
    for (size_t i = 0; i < xs->size(); ++i) {
      auto x = (*xs)[i].as_string();
      if (!x)
        return diag_.error(element_path(path_, i),
                           std::string{"expected a string, got "}
                             + kind_of((*xs)[i]));
      result.push_back(x->get());
    }
    out = std::move(result);
  }

  template <class T>
  void read(T& out, const choices<T>& options) {
    auto x = node_.as_string();
    if (!x)
      return mismatch("one of " + choice_list(options));
    for (auto& [name, value] : options) {
      if (x->get() == name) {
        out = value;
        return;
      }
    }
    diag_.error(path_, "invalid value \"" + x->get() + "\" (expected one of "
                         + choice_list(options) + ")");
  }

private:
  void mismatch(const std::string& expected) {
    diag_.error(path_, "expected " + expected + ", got " + kind_of(node_));
  }

  const toml::node& node_;
  std::string path_;
  diagnostics& diag_;
};

/// Reads the keys of one TOML table. It remembers each key it was asked for,
/// so whatever is left over is reported as unknown.
class table_reader {
public:
  table_reader(const toml::table& table, std::string path, diagnostics& diag)
    : table_(table), path_(std::move(path)), diag_(diag) {
  }

  template <class T>
  void operator()(const char* key, T& out) {
    if (auto node = find(key))
      value_reader{*node, child_path(path_, key), diag_}.read(out);
  }

  template <class T>
  void operator()(const char* key, T& out, const choices<T>& options) {
    if (auto node = find(key))
      value_reader{*node, child_path(path_, key), diag_}.read(out, options);
  }

  /// A pool's idle schedule: an array of tables inside the pool's table.
  void operator()(const char* key, std::vector<idle_window>& out) {
    list(key, out);
  }

  /// A `[key]` table.
  template <class Section>
  void section(const char* key, Section& out);

  /// A `[[key]]` array of tables.
  template <class Entry>
  void list(const char* key, std::vector<Entry>& out);

  void reject_unknown_keys() {
    for (auto& [key, node] : table_) {
      if (known_.count(std::string{key.str()}) == 0)
        diag_.error_at(position_of(key.source()),
                       "unknown key '" + std::string{key.str()} + "' "
                         + (path_.empty() ? "at the top level" : "in " + path_));
    }
  }

private:
  const toml::node* find(const char* key) {
    known_.insert(key);
    auto entry = table_.find(key);
    if (entry == table_.end())
      return nullptr;
    diag_.note(child_path(path_, key), position_of(entry->first.source()));
    return &entry->second;
  }

  const toml::table& table_;
  std::string path_;
  diagnostics& diag_;
  std::set<std::string> known_;
};

// -- the layout: every key of every table, for reading and for writing ---------
// `Visitor` is a table_reader (with `Fields` = queue_config, ...) or a
// table_writer (with `Fields` = const queue_config, ...); the return type
// picks the overload by struct.

template <class Fields, class Struct>
using fields_of =
  std::enable_if_t<std::is_same_v<std::remove_const_t<Fields>, Struct>>;

template <class Visitor, class Fields>
fields_of<Fields, queue_config> visit_fields(Visitor& f, Fields& x) {
  f("name", x.name);
  f("backend", x.backend, backend_names);
  f("url", x.url);
  f("dead_letter", x.dead_letter);
  f("visibility_timeout", x.visibility_timeout);
  f("wait_time", x.wait_time);
  f("batch_size", x.batch_size);
  f("max_receive_count", x.max_receive_count);
  f("max_in_flight", x.max_in_flight);
  f("min_loops", x.min_loops);
  f("max_loops", x.max_loops);
  f("scale_up_depth", x.scale_up_depth);
  f("scale_down_depth", x.scale_down_depth);
  f("storage", x.storage);
}

template <class Visitor, class Fields>
fields_of<Fields, idle_window> visit_fields(Visitor& f, Fields& x) {
  f("cron", x.cron);
  f("timezone", x.timezone);
  f("min_idle", x.min_idle);
}

template <class Visitor, class Fields>
fields_of<Fields, github_app_config> visit_fields(Visitor& f, Fields& x) {
  f("name", x.name);
  f("backend", x.backend, backend_names);
  f("app_id", x.app_id);
  f("private_key_file", x.private_key_file);
  f("private_key_parameter", x.private_key_parameter);
  f("base_url", x.base_url);
  f("max_concurrency", x.max_concurrency);
  f("writes_per_minute", x.writes_per_minute);
  f("points_per_minute", x.points_per_minute);
  f("token_refresh_before", x.token_refresh_before);
  f("request_timeout", x.request_timeout);
  f("max_retries", x.max_retries);
}

template <class Visitor, class Fields>
fields_of<Fields, pool_config> visit_fields(Visitor& f, Fields& x) {
  f("name", x.name);
  f("queue", x.queue);
  f("github_app", x.github_app);
  f("labels", x.labels);
  f("match", x.match, match_names);
  f("priority", x.priority);
  f("level", x.org_level, level_names);
  f("runner_group", x.runner_group);
  f("mode", x.mode, mode_names);
  f("max_runners", x.max_runners);
  f("min_idle", x.min_idle);
  f("instance_types", x.instance_types);
  f("subnets", x.subnets);
  f("launch_template", x.launch_template);
  f("capacity", x.capacity, capacity_names);
  f("on_demand_failover", x.on_demand_failover);
  f("job_queued_check", x.job_queued_check);
  f("reap_interval", x.reap_interval);
  f("minimum_running_time", x.minimum_running_time);
  f("boot_time", x.boot_time);
  f("idle_schedule", x.idle_schedule);
  f("on_demand_after_interruption", x.on_demand_after_interruption);
}

template <class Visitor, class Fields>
fields_of<Fields, aws_config> visit_fields(Visitor& f, Fields& x) {
  f("region", x.region);
  f("backend", x.backend, backend_names);
  f("sqs_endpoint", x.sqs_endpoint);
  f("ec2_endpoint", x.ec2_endpoint);
  f("ssm_endpoint", x.ssm_endpoint);
  f("parameter_prefix", x.parameter_prefix);
  f("profile", x.profile);
  f("kms_key_id", x.kms_key_id);
  f("ssm_throughput", x.ssm_throughput);
}

template <class Visitor, class Fields>
fields_of<Fields, http_config> visit_fields(Visitor& f, Fields& x) {
  f("max_in_flight", x.max_in_flight);
  f("max_host_connections", x.max_host_connections);
  f("ca_bundle", x.ca_bundle);
  f("connect_timeout", x.connect_timeout);
}

template <class Visitor, class Fields>
fields_of<Fields, scaler_config> visit_fields(Visitor& f, Fields& x) {
  f("window", x.window);
  f("max_batch", x.max_batch);
}

template <class Visitor, class Fields>
fields_of<Fields, retry_config> visit_fields(Visitor& f, Fields& x) {
  f("base", x.base);
  f("max", x.max);
  f("jitter", x.jitter);
}

template <class Visitor, class Fields>
fields_of<Fields, poll_loops_config> visit_fields(Visitor& f, Fields& x) {
  f("heartbeat", x.heartbeat);
  f("stale_after", x.stale_after);
  f("sample_every", x.sample_every);
}

template <class Visitor, class Fields>
fields_of<Fields, job_retry_config> visit_fields(Visitor& f, Fields& x) {
  f("enabled", x.enabled);
  f("delay", x.delay);
  f("max_delay", x.max_delay);
  f("max_attempts", x.max_attempts);
  f("jitter", x.jitter);
}

template <class Visitor, class Fields>
fields_of<Fields, server_config> visit_fields(Visitor& f, Fields& x) {
  f("listen", x.listen);
  f("tls_cert_file", x.tls_cert_file);
  f("tls_key_file", x.tls_key_file);
  f("webhook_path", x.webhook_path);
  f("webhook_queue", x.webhook_queue);
  f("webhook_secret_files", x.webhook_secret_files);
  f("allowed_repositories", x.allowed_repositories);
  f("max_body_bytes", x.max_body_bytes);
  f("threads", x.threads);
  f("max_connections", x.max_connections);
  f("max_connections_per_client", x.max_connections_per_client);
  f("max_headers", x.max_headers);
  f("max_header_bytes", x.max_header_bytes);
  f("max_request_line", x.max_request_line);
  f("head_timeout", x.head_timeout);
  f("body_timeout", x.body_timeout);
  f("keep_alive_timeout", x.keep_alive_timeout);
}

template <class Visitor, class Fields>
fields_of<Fields, supervision_config> visit_fields(Visitor& f, Fields& x) {
  f("max_restarts", x.max_restarts);
  f("within", x.within);
  f("initial_backoff", x.initial_backoff);
  f("max_backoff", x.max_backoff);
  f("jitter", x.jitter);
}

template <class Visitor, class Fields>
fields_of<Fields, timeouts_config> visit_fields(Visitor& f, Fields& x) {
  f("launch", x.launch);
  f("ledger", x.ledger);
  f("scale", x.scale);
  f("aws_call", x.aws_call);
  f("github_call", x.github_call);
  f("drain", x.drain);
}

template <class Visitor, class Fields>
fields_of<Fields, simulation_config> visit_fields(Visitor& f, Fields& x) {
  f("seed", x.seed);
  f("boot_delay", x.boot_delay);
  f("ec2_latency", x.ec2_latency);
  f("github_latency", x.github_latency);
  f("ec2_fleet_burst", x.ec2_fleet_burst);
  f("ec2_fleet_refill", x.ec2_fleet_refill);
  f("github_hourly_limit", x.github_hourly_limit);
  f("github_writes_per_minute", x.github_writes_per_minute);
  f("token_ttl", x.token_ttl);
}

template <class Visitor, class Fields>
fields_of<Fields, logging_config> visit_fields(Visitor& f, Fields& x) {
  f("level", x.level);
  f("format", x.format);
}


/// The file's top level, in the order render_config writes it.
template <class Visitor, class Config>
void visit_sections(Visitor& f, Config& cfg) {
  f.section("aws", cfg.aws);
  f.section("http", cfg.http);
  f.list("queues", cfg.queues);
  f.list("github_apps", cfg.github_apps);
  f.list("pools", cfg.pools);
  f.section("scaler", cfg.scaler);
  f.section("retry", cfg.retry);
  f.section("poll_loops", cfg.poll_loops);
  f.section("job_retry", cfg.job_retry);
  f.section("supervision", cfg.supervision);
  f.section("timeouts", cfg.timeouts);
  f.section("simulation", cfg.simulation);
  f.section("server", cfg.server);
  f.section("logging", cfg.logging);
}

template <class Section>
void table_reader::section(const char* key, Section& out) {
  auto node = find(key);
  if (!node)
    return;
  auto path = child_path(path_, key);
  auto table = node->as_table();
  if (!table)
    return diag_.error(path, std::string{"expected a table ["} + key
                               + "], got " + kind_of(*node));
  table_reader nested{*table, path, diag_};
  visit_fields(nested, out);
  nested.reject_unknown_keys();
}

template <class Entry>
void table_reader::list(const char* key, std::vector<Entry>& out) {
  auto node = find(key);
  if (!node)
    return;
  auto path = child_path(path_, key);
  auto entries = node->as_array();
  if (!entries)
    return diag_.error(path, std::string{"expected an array of tables [["}
                               + key + "]], got " + kind_of(*node));
  for (size_t i = 0; i < entries->size(); ++i) {
    auto& entry = (*entries)[i];
    auto entry_path = element_path(path, i);
    auto table = entry.as_table();
    if (!table) {
      diag_.error(entry_path,
                  std::string{"expected a table, got "} + kind_of(entry));
      continue;
    }
    diag_.note(entry_path, position_of(entry.source()));
    table_reader nested{*table, entry_path, diag_};
    Entry parsed;
    visit_fields(nested, parsed);
    nested.reject_unknown_keys();
    out.push_back(std::move(parsed));
  }
}

// -- checking values -----------------------------------------------------------

std::string show(int64_t x) {
  return std::to_string(x);
}

std::string show(caf::timespan x) {
  return format_duration(x);
}

/// Checks `low <= high` for two keys of one table. Blames the key the file
/// sets (the upper one if it sets both), so the message points at a line
/// the operator wrote.
template <class T>
void require_ordered(diagnostics& diag, const std::string& table,
                     const char* low_key, T low, const char* high_key, T high) {
  if (low <= high)
    return;
  auto high_path = child_path(table, high_key);
  if (diag.is_set(high_path) || !diag.is_set(child_path(table, low_key)))
    diag.error(high_path, std::string{"must be >= "} + low_key + " ("
                            + show(low) + ")");
  else
    diag.error(child_path(table, low_key), std::string{"must be <= "}
                                             + high_key + " (" + show(high)
                                             + ")");
}

void require_positive(diagnostics& diag, const std::string& path,
                      caf::timespan x) {
  diag.require(x > caf::timespan{0}, path, "must be > 0s");
}

void require_non_negative(diagnostics& diag, const std::string& path,
                          caf::timespan x) {
  diag.require(x >= caf::timespan{0}, path, "must be >= 0s");
}

void require_at_least(diagnostics& diag, const std::string& path, int64_t x,
                      int64_t least) {
  diag.require(x >= least, path, "must be >= " + std::to_string(least));
}

void require_within(diagnostics& diag, const std::string& path, int64_t x,
                    int64_t least, int64_t most) {
  diag.require(x >= least && x <= most, path,
               "must be within " + std::to_string(least) + ".."
                 + std::to_string(most) + " (got " + std::to_string(x) + ")");
}

void require_jitter(diagnostics& diag, const std::string& path, double x) {
  diag.require(x >= 0.0 && x < 1.0, path, "must be in [0, 1)");
}

void require_set(diagnostics& diag, const std::string& path,
                 const std::string& x) {
  diag.require(!x.empty(), path, "must be set");
}

void require_entries(diagnostics& diag, const std::string& path,
                     const std::vector<std::string>& xs) {
  diag.require(!xs.empty(), path, "must not be empty");
  for (size_t i = 0; i < xs.size(); ++i)
    diag.require(xs[i].find_first_not_of(" \t\r\n") != std::string::npos,
                 element_path(path, i), "must not be empty or blank");
}

bool starts_with(const std::string& x, const std::string& prefix) {
  return x.compare(0, prefix.size(), prefix) == 0;
}

/// An endpoint or queue URL: optional, https (plain http only on loopback,
/// for local peers: bodies carry runner configs), a host, no credentials.
/// The scheme and host are case-insensitive, as in any URL.
void require_url(diagnostics& diag, const std::string& path,
                 const std::string& url) {
  if (url.empty())
    return;
  auto parts = parse_url(url);
  if (!parts) {
    diag.error(path, context_of(parts.error()));
    return;
  }
  auto host = parts->host;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  bool loopback = host == "127.0.0.1" || host == "localhost" || host == "[::1]";
  if (parts->scheme != "https" && !loopback)
    diag.error(path, "must be an https:// URL (http:// only for 127.0.0.1 or "
                     "localhost)");
}

/// Names must be set and unique within their list.
template <class Entry>
void require_unique_names(diagnostics& diag, const std::string& list,
                          const std::vector<Entry>& entries) {
  std::map<std::string, size_t> first;
  for (size_t i = 0; i < entries.size(); ++i) {
    auto path = child_path(element_path(list, i), "name");
    auto& name = entries[i].name;
    if (name.empty()) {
      diag.error(path, "must be set");
      continue;
    }
    auto [at, fresh] = first.emplace(name, i);
    if (!fresh)
      diag.error(path, "duplicate name '" + name + "' (also "
                         + element_path(list, at->second) + ")");
  }
}

void check_queue(const config& cfg, size_t index, diagnostics& diag) {
  auto& q = cfg.queues[index];
  auto at = element_path("queues", index);
  auto key = [&](const char* name) { return child_path(at, name); };
  if (q.backend == backend_kind::remote)
    diag.require(!q.url.empty(), key("url"), "required for a remote queue");
  require_url(diag, key("url"), q.url);
  if (!q.dead_letter.empty()) {
    auto dlq = cfg.find_queue(q.dead_letter);
    if (q.dead_letter == q.name)
      diag.error(key("dead_letter"), "a queue cannot be its own dead-letter queue");
    else if (!dlq)
      diag.error(key("dead_letter"), "names no configured queue '" + q.dead_letter + "'");
    else if (dlq->backend != q.backend)
      diag.error(key("dead_letter"), "queue '" + q.dead_letter
                                       + "' must use the same backend ("
                                       + to_string(q.backend) + ")");
  }
  require_positive(diag, key("visibility_timeout"), q.visibility_timeout);
  diag.require(q.visibility_timeout <= caf::timespan{std::chrono::hours{12}},
               key("visibility_timeout"), "must be <= 12h (the SQS maximum)");
  diag.require(q.wait_time >= caf::timespan{0}
                 && q.wait_time <= caf::timespan{std::chrono::seconds{20}},
               key("wait_time"),
               "must be within 0s..20s (got " + format_duration(q.wait_time) + ")");
  require_within(diag, key("batch_size"), q.batch_size, 1, 10);
  require_at_least(diag, key("max_receive_count"), q.max_receive_count, 1);
  require_within(diag, key("max_in_flight"), q.max_in_flight, 1, 1000);
  require_at_least(diag, key("min_loops"), q.min_loops, 1);
  require_ordered<int64_t>(diag, at, "min_loops", q.min_loops, "max_loops",
                           q.max_loops);
  require_at_least(diag, key("scale_down_depth"), q.scale_down_depth, 0);
  if (q.scale_down_depth >= q.scale_up_depth)
    diag.error(key("scale_up_depth"),
               "must be > scale_down_depth (" + std::to_string(q.scale_down_depth)
                 + "): the band between them is the hysteresis");
  if (!q.storage.empty())
    diag.require(q.backend == backend_kind::embedded, key("storage"),
                 "only embedded queues have local storage");
}

void check_app(const github_app_config& app, size_t index, diagnostics& diag) {
  auto at = element_path("github_apps", index);
  auto key = [&](const char* name) { return child_path(at, name); };
  if (app.backend == backend_kind::remote) {
    diag.require(app.app_id > 0, key("app_id"), "must be > 0 for a remote app");
    if (app.private_key_file.empty() == app.private_key_parameter.empty())
      diag.error(at, "a remote app needs exactly one of private_key_file and "
                     "private_key_parameter");
  } else {
    require_at_least(diag, key("app_id"), app.app_id, 0);
  }
  if (app.base_url.empty())
    diag.error(key("base_url"), "must be set");
  require_url(diag, key("base_url"), app.base_url);
  require_within(diag, key("max_concurrency"), app.max_concurrency, 1, 100);
  require_at_least(diag, key("writes_per_minute"), app.writes_per_minute, 1);
  require_at_least(diag, key("points_per_minute"), app.points_per_minute, 1);
  require_positive(diag, key("token_refresh_before"), app.token_refresh_before);
  require_positive(diag, key("request_timeout"), app.request_timeout);
  require_at_least(diag, key("max_retries"), app.max_retries, 0);
}

void check_pool(const config& cfg, size_t index, diagnostics& diag) {
  auto& p = cfg.pools[index];
  auto at = element_path("pools", index);
  auto key = [&](const char* name) { return child_path(at, name); };
  if (p.queue.empty())
    diag.error(key("queue"), "must be set");
  else if (!cfg.find_queue(p.queue))
    diag.error(key("queue"), "names no configured queue '" + p.queue + "'");
  if (p.github_app.empty())
    diag.error(key("github_app"), "must be set");
  else if (!cfg.find_app(p.github_app))
    diag.error(key("github_app"),
               "names no configured GitHub App '" + p.github_app + "'");
  require_entries(diag, key("labels"), p.labels);
  require_set(diag, key("runner_group"), p.runner_group);
  require_at_least(diag, key("max_runners"), p.max_runners, 1);
  require_at_least(diag, key("min_idle"), p.min_idle, 0);
  require_ordered<int64_t>(diag, at, "min_idle", p.min_idle, "max_runners",
                           p.max_runners);
  require_entries(diag, key("instance_types"), p.instance_types);
  if (cfg.aws.backend == backend_kind::remote) {
    diag.require(!p.subnets.empty(), key("subnets"),
                 "must not be empty with the remote AWS backend");
    diag.require(!p.launch_template.empty(), key("launch_template"),
                 "must be set with the remote AWS backend");
  }
  for (size_t i = 0; i < p.subnets.size(); ++i)
    require_set(diag, element_path(key("subnets"), i), p.subnets[i]);
  for (size_t i = 0; i < p.on_demand_failover.size(); ++i)
    require_set(diag, element_path(key("on_demand_failover"), i),
                p.on_demand_failover[i]);
  require_positive(diag, key("reap_interval"), p.reap_interval);
  require_non_negative(diag, key("minimum_running_time"), p.minimum_running_time);
  require_positive(diag, key("boot_time"), p.boot_time);
  for (size_t i = 0; i < p.idle_schedule.size(); ++i) {
    auto window = element_path(key("idle_schedule"), i);
    auto& w = p.idle_schedule[i];
    require_within(diag, child_path(window, "min_idle"), w.min_idle, 0,
                   p.max_runners);
    if (auto err = check_idle_schedule({w}))
      diag.error(window, describe(err));
  }
}

/// A queue that feeds a pool must be able to dead-letter what never works.
void check_pool_queues_have_dead_letters(const config& cfg,
                                         diagnostics& diag) {
  for (size_t i = 0; i < cfg.queues.size(); ++i) {
    auto& q = cfg.queues[i];
    auto feeds = std::find_if(cfg.pools.begin(), cfg.pools.end(),
                              [&](auto& p) { return p.queue == q.name; });
    if (feeds != cfg.pools.end() && q.dead_letter.empty())
      diag.error(child_path(element_path("queues", i), "dead_letter"),
                 "required: pool '" + feeds->name + "' takes jobs from this queue");
  }
}

/// A drain waits for each poller's long poll in flight: it needs longer.
void check_drain_outlasts_long_polls(const config& cfg, diagnostics& diag) {
  for (auto& q : cfg.queues) {
    auto polled = std::any_of(cfg.pools.begin(), cfg.pools.end(),
                              [&](auto& p) { return p.queue == q.name; });
    if (polled && cfg.timeouts.drain <= q.wait_time) {
      diag.error("timeouts.drain",
                 "must be longer than the wait_time of queue '" + q.name
                   + "' (" + format_duration(q.wait_time)
                   + "): a drain waits for the long poll in flight");
      return;
    }
  }
}

/// The listener: where webhooks go, how they are checked.
void check_server(const config& cfg, diagnostics& diag) {
  auto& srv = cfg.server;
  if (srv.listen.empty())
    return;
  if (auto addr = parse_listen(srv.listen); !addr)
    diag.error("server.listen", context_of(addr.error())
                                  + " (e.g. \"0.0.0.0:8080\")");
  if (srv.tls_cert_file.empty() != srv.tls_key_file.empty())
    diag.error("server", "tls_cert_file and tls_key_file go together");
  diag.require(starts_with(srv.webhook_path, "/"), "server.webhook_path",
               "must start with '/'");
  if (!srv.webhook_queue.empty()) {
    diag.require(cfg.find_queue(srv.webhook_queue) != nullptr,
                 "server.webhook_queue",
                 "names no configured queue '" + srv.webhook_queue + "'");
    require_entries(diag, "server.webhook_secret_files", srv.webhook_secret_files);
  }
  require_within(diag, "server.max_body_bytes", srv.max_body_bytes, 1024,
                 25 * 1024 * 1024);
  require_within(diag, "server.threads", srv.threads, 1, 256);
  require_within(diag, "server.max_connections", srv.max_connections, 1, 65535);
  require_within(diag, "server.max_connections_per_client",
                 srv.max_connections_per_client, 1, srv.max_connections);
  require_within(diag, "server.max_headers", srv.max_headers, 8, 10000);
  require_within(diag, "server.max_header_bytes", srv.max_header_bytes, 1024,
                 1024 * 1024);
  require_within(diag, "server.max_request_line", srv.max_request_line, 256,
                 64 * 1024);
  for (auto [key, value] : {std::pair{"server.head_timeout", srv.head_timeout},
                            std::pair{"server.body_timeout", srv.body_timeout},
                            std::pair{"server.keep_alive_timeout",
                                      srv.keep_alive_timeout}})
    require_positive(diag, key, value);
}

void check_sections(const config& cfg, diagnostics& diag) {
  require_set(diag, "aws.region", cfg.aws.region);
  require_url(diag, "aws.sqs_endpoint", cfg.aws.sqs_endpoint);
  require_url(diag, "aws.ec2_endpoint", cfg.aws.ec2_endpoint);
  require_url(diag, "aws.ssm_endpoint", cfg.aws.ssm_endpoint);
  diag.require(starts_with(cfg.aws.parameter_prefix, "/"),
               "aws.parameter_prefix", "must start with '/'");
  diag.require(cfg.aws.ssm_throughput > 0 && cfg.aws.ssm_throughput <= 10000,
               "aws.ssm_throughput", "must be within (0, 10000]");
  require_within(diag, "http.max_in_flight", cfg.http.max_in_flight, 1, 1024);
  require_within(diag, "http.max_host_connections",
                 cfg.http.max_host_connections, 1, 1024);
  require_positive(diag, "http.connect_timeout", cfg.http.connect_timeout);
  require_non_negative(diag, "scaler.window", cfg.scaler.window);
  require_at_least(diag, "scaler.max_batch", cfg.scaler.max_batch, 1);
  require_positive(diag, "retry.base", cfg.retry.base);
  require_ordered(diag, "retry", "base", cfg.retry.base, "max", cfg.retry.max);
  require_jitter(diag, "retry.jitter", cfg.retry.jitter);
  auto& loops = cfg.poll_loops;
  require_positive(diag, "poll_loops.heartbeat", loops.heartbeat);
  require_positive(diag, "poll_loops.sample_every", loops.sample_every);
  diag.require(loops.stale_after >= 2 * loops.heartbeat, "poll_loops.stale_after",
               "must be >= twice poll_loops.heartbeat ("
                 + format_duration(2 * loops.heartbeat)
                 + "): one late heartbeat must not replace a loop");
  auto& jr = cfg.job_retry;
  require_positive(diag, "job_retry.delay", jr.delay);
  require_ordered(diag, "job_retry", "delay", jr.delay, "max_delay", jr.max_delay);
  require_at_least(diag, "job_retry.max_attempts", jr.max_attempts, 1);
  require_jitter(diag, "job_retry.jitter", jr.jitter);
  check_server(cfg, diag);
  auto& sup = cfg.supervision;
  require_at_least(diag, "supervision.max_restarts", sup.max_restarts, 0);
  require_positive(diag, "supervision.within", sup.within);
  require_positive(diag, "supervision.initial_backoff", sup.initial_backoff);
  require_ordered(diag, "supervision", "initial_backoff", sup.initial_backoff,
                  "max_backoff", sup.max_backoff);
  require_jitter(diag, "supervision.jitter", sup.jitter);
  struct timeout_check {
    const char* key;
    caf::timespan value;
  };
  auto& t = cfg.timeouts;
  for (auto [key, value] : {timeout_check{"launch", t.launch},
                            timeout_check{"ledger", t.ledger},
                            timeout_check{"scale", t.scale},
                            timeout_check{"aws_call", t.aws_call},
                            timeout_check{"github_call", t.github_call},
                            timeout_check{"drain", t.drain}})
    require_positive(diag, child_path("timeouts", key), value);
  auto& sim = cfg.simulation;
  require_non_negative(diag, "simulation.boot_delay", sim.boot_delay);
  require_non_negative(diag, "simulation.ec2_latency", sim.ec2_latency);
  require_non_negative(diag, "simulation.github_latency", sim.github_latency);
  require_at_least(diag, "simulation.ec2_fleet_burst", sim.ec2_fleet_burst, 1);
  diag.require(sim.ec2_fleet_refill >= 0.0, "simulation.ec2_fleet_refill",
               "must be >= 0");
  require_at_least(diag, "simulation.github_hourly_limit",
                   sim.github_hourly_limit, 0);
  require_at_least(diag, "simulation.github_writes_per_minute",
                   sim.github_writes_per_minute, 0);
  require_positive(diag, "simulation.token_ttl", sim.token_ttl);
  diag.require(log_levels.count(cfg.logging.level) > 0, "logging.level",
               "invalid value \"" + cfg.logging.level
                 + "\" (expected one of trace, debug, info, warn, error, off)");
  diag.require(log_formats.count(cfg.logging.format) > 0, "logging.format",
               "invalid value \"" + cfg.logging.format
                 + "\" (expected logfmt or json)");
}

void check_config(const config& cfg, diagnostics& diag) {
  diag.require(!cfg.queues.empty(), "queues",
               "at least one [[queues]] entry is required");
  diag.require(!cfg.pools.empty(), "pools",
               "at least one [[pools]] entry is required");
  require_unique_names(diag, "queues", cfg.queues);
  require_unique_names(diag, "github_apps", cfg.github_apps);
  require_unique_names(diag, "pools", cfg.pools);
  for (size_t i = 0; i < cfg.queues.size(); ++i)
    check_queue(cfg, i, diag);
  check_drain_outlasts_long_polls(cfg, diag);
  for (size_t i = 0; i < cfg.github_apps.size(); ++i)
    check_app(cfg.github_apps[i], i, diag);
  for (size_t i = 0; i < cfg.pools.size(); ++i)
    check_pool(cfg, i, diag);
  check_pool_queues_have_dead_letters(cfg, diag);
  check_sections(cfg, diag);
}

// -- writing TOML ----------------------------------------------------------------

std::string quoted(const std::string& x) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string result = "\"";
  for (unsigned char c : x) {
    switch (c) {
      case '"': result += "\\\""; break;
      case '\\': result += "\\\\"; break;
      case '\n': result += "\\n"; break;
      case '\t': result += "\\t"; break;
      case '\r': result += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          result += "\\u00";
          result += hex[c >> 4];
          result += hex[c & 0xf];
        } else {
          result += static_cast<char>(c);
        }
    }
  }
  return result + "\"";
}

/// Writes `key = value` lines in the layout of the visit_* functions.
class table_writer {
public:
  void operator()(const char* key, const std::string& x) {
    line(key, quoted(x));
  }

  void operator()(const char* key, bool x) {
    line(key, x ? "true" : "false");
  }

  template <class Int>
  std::enable_if_t<std::is_integral_v<Int>> operator()(const char* key, Int x) {
    line(key, std::to_string(x));
  }

  void operator()(const char* key, double x) {
    // The shortest text that reads back as the same double, kept a float.
    char buf[64];
    auto end = std::to_chars(buf, buf + sizeof(buf), x).ptr;
    std::string text{buf, end};
    if (text.find_first_of(".e") == std::string::npos)
      text += ".0";
    line(key, text);
  }

  void operator()(const char* key, caf::timespan x) {
    line(key, quoted(format_duration(x)));
  }

  void operator()(const char* key, const std::vector<std::string>& xs) {
    std::string text = "[";
    for (auto& x : xs)
      text += (text.size() > 1 ? ", " : "") + quoted(x);
    line(key, text + "]");
  }

  template <class T>
  void operator()(const char* key, T x, const choices<T>& options) {
    line(key, quoted(choice_name(options, x)));
  }

  /// Nested arrays of tables are written inline: `[[pools.x]]` headers
  /// would need the parent's index.
  void operator()(const char* key, const std::vector<idle_window>& xs) {
    std::string text = "[";
    for (auto& x : xs)
      text += std::string{text.size() > 1 ? ", " : ""} + "{ cron = " + quoted(x.cron)
              + ", timezone = " + quoted(x.timezone)
              + ", min_idle = " + std::to_string(x.min_idle) + " }";
    line(key, text + "]");
  }

  template <class Section>
  void section(const char* key, const Section& x) {
    out_ << "\n[" << key << "]\n";
    visit_fields(*this, x);
  }

  template <class Entry>
  void list(const char* key, const std::vector<Entry>& xs) {
    for (auto& x : xs) {
      out_ << "\n[[" << key << "]]\n";
      visit_fields(*this, x);
    }
  }

  std::string str() const {
    return out_.str();
  }

private:
  void line(const char* key, const std::string& value) {
    out_ << key << " = " << value << '\n';
  }

  std::ostringstream out_;
};

// -- durations -----------------------------------------------------------------

struct duration_unit {
  const char* suffix;
  int64_t nanoseconds;
};

// Largest first: parsing requires this order, formatting emits it.
constexpr duration_unit duration_units[] = {
  {"h", 3'600'000'000'000},
  {"m", 60'000'000'000},
  {"s", 1'000'000'000},
  {"ms", 1'000'000},
  {"us", 1'000},
  {"ns", 1},
};

} // namespace

bool parse_duration(const std::string& text, caf::timespan& out) {
  if (text.empty())
    return false;
  int64_t total = 0;
  size_t next_unit = 0; // units must appear largest first, each at most once
  size_t pos = 0;
  while (pos < text.size()) {
    if (text[pos] < '0' || text[pos] > '9') // no sign, no missing count
      return false;
    int64_t count = 0;
    auto [digits_end, ec] = std::from_chars(text.data() + pos,
                                            text.data() + text.size(), count);
    if (ec != std::errc{})
      return false;
    pos = static_cast<size_t>(digits_end - text.data());
    auto unit_end = text.find_first_of("0123456789", pos);
    auto suffix = text.substr(pos, unit_end - pos);
    auto unit = next_unit;
    while (unit < std::size(duration_units)
           && suffix != duration_units[unit].suffix)
      ++unit;
    if (unit == std::size(duration_units))
      return false;
    auto scale = duration_units[unit].nanoseconds;
    if (count > (std::numeric_limits<int64_t>::max() - total) / scale)
      return false;
    total += count * scale;
    next_unit = unit + 1;
    pos += suffix.size();
  }
  out = caf::timespan{total};
  return true;
}

std::string format_duration(caf::timespan x) {
  auto count = x.count();
  // The magnitude as unsigned, so even the most negative value has one.
  auto rest = count < 0 ? uint64_t{0} - static_cast<uint64_t>(count)
                        : static_cast<uint64_t>(count);
  if (rest == 0)
    return "0s";
  std::string result = count < 0 ? "-" : "";
  for (auto& unit : duration_units) {
    auto scale = static_cast<uint64_t>(unit.nanoseconds);
    if (rest >= scale) {
      result += std::to_string(rest / scale) + unit.suffix;
      rest %= scale;
    }
  }
  return result;
}

namespace {

/// Dots a line may have outside strings and comments. toml++ parses a dotted
/// key recursively, a level per dot, so a line of 100,000 of them overflows
/// the stack; ghscale's keys nest four deep, and a float has one dot.
constexpr size_t max_dots_per_line = 64;

/// The first line with more than max_dots_per_line dots outside strings and
/// comments, if any (TOML's four kinds of strings; a backslash escapes in the
/// basic ones).
std::optional<uint32_t> line_of_deep_keys(std::string_view text) {
  enum class in { code, comment, basic, literal, ml_basic, ml_literal };
  auto state = in::code;
  uint32_t line = 1;
  size_t dots = 0;
  auto at = [&](size_t i, std::string_view what) {
    return text.substr(i, what.size()) == what;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\n') {
      ++line;
      dots = 0;
      if (state != in::ml_basic && state != in::ml_literal)
        state = in::code;
      continue;
    }
    switch (state) {
      case in::code:
        if (c == '#') {
          state = in::comment;
        } else if (at(i, R"(""")")) {
          state = in::ml_basic;
          i += 2;
        } else if (at(i, "'''")) {
          state = in::ml_literal;
          i += 2;
        } else if (c == '"') {
          state = in::basic;
        } else if (c == '\'') {
          state = in::literal;
        } else if (c == '.' && ++dots > max_dots_per_line) {
          return line;
        }
        break;
      case in::basic:
      case in::ml_basic:
        if (c == '\\' && i + 1 < text.size() && text[i + 1] != '\n') {
          ++i;
        } else if (state == in::basic && c == '"') {
          state = in::code;
        } else if (state == in::ml_basic && at(i, R"(""")")) {
          state = in::code;
          i += 2;
        }
        break;
      case in::literal:
        if (c == '\'')
          state = in::code;
        break;
      case in::ml_literal:
        if (at(i, "'''")) {
          state = in::code;
          i += 2;
        }
        break;
      case in::comment:
        break;
    }
  }
  return std::nullopt;
}

} // namespace

caf::expected<config> parse_config(const std::string& text,
                                   const std::string& source,
                                   config_checks checks) {
  diagnostics diag{source};
  if (auto line = line_of_deep_keys(text)) {
    diag.error_at({*line, 1}, "more than " + std::to_string(max_dots_per_line)
                                + " dots outside strings: keys do not nest that deep");
    return diag.to_error();
  }
  toml::table document;
  try {
    document = toml::parse(std::string_view{text}, std::string_view{source});
  } catch (const toml::parse_error& err) {
    // toml++ reports syntax errors by exception; here they become values.
    diag.error_at(position_of(err.source()), std::string{err.description()});
    return diag.to_error();
  }
  config cfg;
  table_reader root{document, "", diag};
  visit_sections(root, cfg);
  root.reject_unknown_keys();
  // Values are only worth checking once every one of them has been read.
  if (diag.empty())
    check_config(cfg, diag);
  // Files are only worth reading once the values that name them hold.
  if (diag.empty() && checks == config_checks::files)
    check_referenced_files(cfg, [&](const std::string& key, const std::string& what) {
      diag.error(key, what);
    });
  if (!diag.empty())
    return diag.to_error();
  return cfg;
}

caf::expected<config> load_config_file(const std::string& path,
                                       config_checks checks) {
  std::error_code ignored;
  if (std::filesystem::is_directory(path, ignored))
    return caf::make_error(errc::invalid_config, "cannot read config file '"
                                                   + path + "': is a directory");
  auto text = read_file(path);
  if (!text)
    return caf::make_error(errc::invalid_config, "cannot read config file '"
                                                   + path + "': "
                                                   + std::strerror(errno));
  return parse_config(*text, path, checks);
}

std::string render_config(const config& cfg) {
  table_writer writer;
  visit_sections(writer, cfg);
  return "# ghscale configuration, fully resolved (defaults filled in).\n"
         "# Nothing here is secret: private keys are referenced by file path or\n"
         "# SSM parameter name, never included, and URLs with credentials are\n"
         "# rejected when the file is read.\n"
         + writer.str();
}

} // namespace ghscale
