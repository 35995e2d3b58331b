#include "actors/ops/metrics.hpp"

#include <algorithm>

namespace ghscale {

namespace {
// Latency buckets in seconds: 1 ms to 30 min.
const std::vector<double> default_bounds = {0.001, 0.005, 0.01, 0.05, 0.1,
                                            0.25,  0.5,   1,    2.5,  5,
                                            10,    30,    60,   120,  300,
                                            600,   1800};
} // namespace

std::string metrics::series_key(const std::string& name,
                                const label_set& labels) {
  if (labels.empty())
    return name;
  auto sorted = labels;
  std::sort(sorted.begin(), sorted.end());
  std::string out = name + "{";
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0)
      out += ',';
    out += sorted[i].first + "=\"";
    for (char c : sorted[i].second) {
      if (c == '"' || c == '\\')
        out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

std::atomic<int64_t>& metrics::counter_ref(const std::string& key) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& slot = counters_[key];
  if (!slot)
    slot = std::make_unique<std::atomic<int64_t>>(0);
  return *slot;
}

void metrics::add(const std::string& name, const label_set& labels, int64_t n) {
  counter_ref(series_key(name, labels)).fetch_add(n, std::memory_order_relaxed);
}

void metrics::set(const std::string& name, const label_set& labels,
                  double value) {
  std::lock_guard<std::mutex> guard{mtx_};
  gauges_[series_key(name, labels)] = value;
}

void metrics::set_member(const std::string& name, const label_set& labels,
                         const std::string& member, double value, aggregate how) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto key = series_key(name, labels);
  auto& m = members_[key];
  m.how = how;
  m.values[member] = value;
  publish(key, m);
}

void metrics::drop_member(const std::string& name, const label_set& labels,
                          const std::string& member) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto key = series_key(name, labels);
  auto i = members_.find(key);
  if (i == members_.end())
    return;
  i->second.values.erase(member);
  if (!i->second.values.empty()) {
    publish(key, i->second);
    return;
  }
  members_.erase(i);
  gauges_.erase(key);
}

void metrics::publish(const std::string& key, const member_values& m) {
  auto out = m.how == aggregate::sum ? 0.0 : m.values.begin()->second;
  for (auto& [member, value] : m.values)
    out = m.how == aggregate::sum ? out + value : std::min(out, value);
  gauges_[key] = out;
}

void metrics::observe(const std::string& name, const label_set& labels,
                      double value) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto& h = histograms_[series_key(name, labels)];
  if (h.bounds.empty()) {
    h.bounds = default_bounds;
    h.buckets.assign(h.bounds.size(), 0);
  }
  for (size_t i = 0; i < h.bounds.size(); ++i)
    if (value <= h.bounds[i])
      ++h.buckets[i];
  ++h.count;
  h.sum += value;
}

int64_t metrics::count(const std::string& name, const label_set& labels) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = counters_.find(series_key(name, labels));
  return i == counters_.end() ? 0 : i->second->load();
}

int64_t metrics::total(const std::string& name) const {
  std::lock_guard<std::mutex> guard{mtx_};
  int64_t sum = 0;
  for (auto& [key, value] : counters_)
    if (key == name || key.rfind(name + "{", 0) == 0)
      sum += value->load();
  return sum;
}

double metrics::gauge(const std::string& name, const label_set& labels) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = gauges_.find(series_key(name, labels));
  return i == gauges_.end() ? 0 : i->second;
}

std::vector<std::pair<std::string, int64_t>> metrics::counters() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<std::pair<std::string, int64_t>> out;
  for (auto& [key, value] : counters_)
    out.emplace_back(key, value->load());
  return out;
}

std::vector<std::pair<std::string, double>> metrics::gauges() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return {gauges_.begin(), gauges_.end()};
}

std::vector<std::pair<std::string, metrics::histogram>>
metrics::histograms() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return {histograms_.begin(), histograms_.end()};
}

metric_snapshot metrics::snapshot() const {
  return {counters(), gauges(), histograms()};
}

} // namespace ghscale
