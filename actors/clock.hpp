#pragma once
// Time as actors see it: the actor clock (virtual under CAF's test
// scheduler and in `ghscale simulate`), as a timespan since its epoch, the
// form `*_at` fields of messages use.
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>

namespace ghscale {

template <class Self>
caf::timespan now(Self* self) {
  return self->clock().now().time_since_epoch();
}

inline int64_t to_ms(caf::timespan x) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(x).count();
}

} // namespace ghscale
