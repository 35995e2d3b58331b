#pragma once
// A value that must never reach a log line, a metric or an error message:
// private keys, installation tokens, JIT configs. It serializes normally (so it
// can travel between nodes) but prints as "***" through caf::deep_to_string.
#include <caf/all.hpp>
#include <caf/detail/stringification_inspector.hpp>

#include <string>
#include <type_traits>

namespace ghscale {

struct secret_string {
  std::string value;
  bool empty() const noexcept { return value.empty(); }
  friend bool operator==(const secret_string& a, const secret_string& b) {
    return a.value == b.value;
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, secret_string& x) {
  if constexpr (std::is_same<Inspector,
                             caf::detail::stringification_inspector>::value) {
    std::string masked = x.value.empty() ? "" : "***";
    return f(caf::meta::type_name("secret"), masked);
  } else {
    return f(caf::meta::type_name("ghscale::secret_string"), x.value);
  }
}

} // namespace ghscale
