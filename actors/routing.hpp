#pragma once
// Which pool takes a job: label matchers by priority. Pure.
#include "messages/config.hpp"

#include <string>
#include <vector>

namespace ghscale {

/// True if `pool`'s matcher fits `job_labels` (case-insensitive):
/// exact: the label sets are equal; subset: every job label is a pool label.
bool labels_match(const pool_config& pool,
                  const std::vector<std::string>& job_labels);

/// The matching pool of highest priority among those fed by `queue`
/// (ties: first in configuration order), or nullptr: no match.
const pool_config* route(const std::vector<pool_config>& pools,
                         const std::string& queue,
                         const std::vector<std::string>& job_labels);

} // namespace ghscale
