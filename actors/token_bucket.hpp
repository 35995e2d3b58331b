#pragma once
// A token bucket on the actor clock, as AWS throttles its APIs: it holds at
// most `capacity` tokens, refills `refill_per_second`, and each call takes
// one. Keeping the client's own bucket a little under the service's means
// bursts queue here instead of failing there. Pure: the caller passes the
// time.
#include <caf/timespan.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

namespace ghscale {

/// The shape of one bucket.
struct bucket_spec {
  double capacity = 1;
  double refill_per_second = 1;
};

class token_bucket {
public:
  /// A full bucket at `now`.
  token_bucket(bucket_spec spec, caf::timespan now)
    : spec_(spec), tokens_(spec.capacity), updated_(now) {
  }

  /// Takes a token at `now` and returns zero, or, if none is there, takes
  /// nothing and returns how long until one is.
  caf::timespan take(caf::timespan now) {
    refill(now);
    if (tokens_ >= 1.0) {
      tokens_ -= 1.0;
      return caf::timespan{0};
    }
    auto seconds = (1.0 - tokens_) / spec_.refill_per_second;
    auto wait = std::chrono::duration<double>{seconds};
    // Round up so that the token is really there when the wait is over.
    return std::max(caf::timespan{1},
                    std::chrono::ceil<caf::timespan>(wait));
  }

  /// Tokens there at `now`.
  double tokens(caf::timespan now) {
    refill(now);
    return tokens_;
  }

private:
  void refill(caf::timespan now) {
    if (now <= updated_)
      return;
    auto elapsed = std::chrono::duration<double>{now - updated_}.count();
    tokens_ = std::min(spec_.capacity, tokens_ + elapsed * spec_.refill_per_second);
    updated_ = now;
  }

  bucket_spec spec_;
  double tokens_;
  caf::timespan updated_;
};

} // namespace ghscale
