#include "actors/write_window.hpp"

namespace ghscale {

namespace {

void drop_before(std::deque<caf::timespan>& starts, caf::timespan length,
                 caf::timespan now) {
  while (!starts.empty() && starts.front() + length <= now)
    starts.pop_front();
}

} // namespace

void write_window::forget(caf::timespan now) {
  drop_before(starts_, length_, now);
}

std::vector<caf::timespan> write_window::next_starts(int64_t n,
                                                     caf::timespan from) const {
  std::vector<caf::timespan> out;
  if (n <= 0 || limit_ <= 0)
    return out;
  out.reserve(static_cast<size_t>(n));
  auto window = starts_;
  auto t = from;
  while (static_cast<int64_t>(out.size()) < n) {
    drop_before(window, length_, t);
    if (static_cast<int64_t>(window.size()) >= limit_) {
      t = window.front() + length_; // the oldest leaves, a slot opens
      continue;
    }
    window.push_back(t);
    out.push_back(t);
  }
  return out;
}

} // namespace ghscale
