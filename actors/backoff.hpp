#pragma once
// Exponential backoff with jitter, the one formula every retry in ghscale
// uses: message retries (by receive count), supervisor restarts, GitHub and
// AWS call retries.
#include <caf/timespan.hpp>

#include <algorithm>
#include <cstdint>
#include <random>

namespace ghscale {

/// `base * 2^(attempt-1)`, capped at `max`, then scaled by a uniform factor
/// in [1 - jitter, 1 + jitter] (and capped at `max` again). `attempt` >= 1.
inline caf::timespan jittered_backoff(caf::timespan base, caf::timespan max,
                                      int32_t attempt, double jitter,
                                      std::mt19937_64& rng) {
  auto shift = std::clamp<int32_t>(attempt - 1, 0, 40);
  auto raw = base.count() > (max.count() >> shift) ? max.count()
                                                     : base.count() << shift;
  double factor = 1.0;
  if (jitter > 0) {
    std::uniform_real_distribution<double> dist{1.0 - jitter, 1.0 + jitter};
    factor = dist(rng);
  }
  auto scaled = static_cast<caf::timespan::rep>(static_cast<double>(raw) * factor);
  return caf::timespan{std::clamp<caf::timespan::rep>(scaled, 0, max.count())};
}

} // namespace ghscale
