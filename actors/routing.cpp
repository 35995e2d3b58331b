#include "actors/routing.hpp"

#include "messages/text.hpp"

#include <algorithm>
#include <cctype>
#include <set>
#include <utility>

namespace ghscale {

namespace {

/// GitHub compares runner labels case-insensitively and ignores repeats.
std::set<std::string> label_set(const std::vector<std::string>& labels) {
  std::set<std::string> result;
  for (auto& label : labels)
    result.insert(ascii_lower(label));
  return result;
}

} // namespace

bool labels_match(const pool_config& pool,
                  const std::vector<std::string>& job_labels) {
  // Every GitHub job names at least one label; one without any must never
  // land on a self-hosted runner.
  if (job_labels.empty())
    return false;
  auto wanted = label_set(job_labels);
  auto offered = label_set(pool.labels);
  switch (pool.match) {
    case label_match::exact:
      return wanted == offered;
    case label_match::subset:
      return std::includes(offered.begin(), offered.end(), wanted.begin(),
                           wanted.end());
  }
  return false;
}

const pool_config* route(const std::vector<pool_config>& pools,
                         const std::string& queue,
                         const std::vector<std::string>& job_labels) {
  const pool_config* best = nullptr;
  for (const auto& pool : pools) {
    // Strictly greater: on a tie the pool configured first keeps the job.
    if (pool.queue == queue && (best == nullptr || pool.priority > best->priority)
        && labels_match(pool, job_labels))
      best = &pool;
  }
  return best;
}

} // namespace ghscale
