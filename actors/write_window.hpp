#pragma once
// GitHub's secondary limit on content-creating requests as one installation
// client keeps it: at most `limit` starts in any `length` of time. Pure: no
// actor, no clock; times are actor-clock points (since its epoch).
#include <caf/timespan.hpp>

#include <cstdint>
#include <deque>
#include <vector>

namespace ghscale {

class write_window {
public:
  write_window(int64_t limit, caf::timespan length)
    : limit_(limit), length_(length) {}

  /// Drops the starts that left the window by `now`.
  void forget(caf::timespan now);

  /// Whether a write may start at `now` (call `forget(now)` first).
  bool open() const noexcept {
    return static_cast<int64_t>(starts_.size()) < limit_;
  }

  void record(caf::timespan t) { starts_.push_back(t); }

  /// When the window next opens, given it is full (the oldest start leaves).
  caf::timespan reopens_at() const { return starts_.front() + length_; }

  /// Starts still in the window.
  int64_t used() const noexcept { return static_cast<int64_t>(starts_.size()); }

  /// The earliest times at which `n` further writes could start, from
  /// `from` on, one after the other, each as soon as the window allows.
  std::vector<caf::timespan> next_starts(int64_t n, caf::timespan from) const;

private:
  int64_t limit_;
  caf::timespan length_;
  std::deque<caf::timespan> starts_; // oldest first
};

} // namespace ghscale
