#pragma once
// Process-wide counters, gauges and histograms. Actors receive a shared
// `metrics` at spawn time and update it without messages (atomics), so
// counting costs no actor hops. Labels are bounded by construction: pool,
// queue, API, error code, outcome; never a job id and never a secret.
#include "transport/prometheus.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace ghscale {

using label_set = std::vector<std::pair<std::string, std::string>>;

class metrics {
public:
  /// Adds `n` to a counter.
  void add(const std::string& name, const label_set& labels, int64_t n = 1);
  /// Sets a gauge.
  void set(const std::string& name, const label_set& labels, double value);
  /// One member's share of a gauge over a set of members (an App's
  /// installations, say): the series shows the members' minimum or sum, so
  /// that members, which outsiders can multiply, never become labels.
  enum class aggregate { min, sum };
  void set_member(const std::string& name, const label_set& labels,
                  const std::string& member, double value, aggregate how);
  /// The member is gone; the series goes with its last member.
  void drop_member(const std::string& name, const label_set& labels,
                   const std::string& member);
  /// Records one observation (seconds) in a histogram.
  void observe(const std::string& name, const label_set& labels, double value);

  /// The counter's value (0 if never touched).
  int64_t count(const std::string& name, const label_set& labels = {}) const;
  /// Sum of a counter over all label sets.
  int64_t total(const std::string& name) const;
  double gauge(const std::string& name, const label_set& labels = {}) const;

  using histogram = metric_histogram;
  /// Every series, keyed by "name{k=\"v\",...}", for exposition and reports.
  std::vector<std::pair<std::string, int64_t>> counters() const;
  std::vector<std::pair<std::string, double>> gauges() const;
  std::vector<std::pair<std::string, histogram>> histograms() const;
  /// All three at once, for exposition (transport/prometheus).
  metric_snapshot snapshot() const;

  /// Renders `name{k="v",...}` with labels sorted.
  static std::string series_key(const std::string& name, const label_set& labels);

private:
  mutable std::mutex mtx_;
  std::map<std::string, std::unique_ptr<std::atomic<int64_t>>> counters_;
  std::map<std::string, double> gauges_;
  std::map<std::string, histogram> histograms_;
  struct member_values {
    aggregate how = aggregate::min;
    std::map<std::string, double> values;
  };
  std::map<std::string, member_values> members_; // by series key
  void publish(const std::string& key, const member_values& m); // mtx_ held
  std::atomic<int64_t>& counter_ref(const std::string& key);
};

using metrics_ptr = std::shared_ptr<metrics>;

} // namespace ghscale
