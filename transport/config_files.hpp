#pragma once
// What `ghscale run` will need from the files a configuration names, checked
// up front so that `check-config` refuses what `run` would: every App key
// read and parsed, every webhook secret read, the TLS pair loaded (and
// matching), the CA bundle read, every queue's storage directory writable.
#include "messages/config.hpp"

#include <functional>
#include <string>

namespace ghscale {

/// Calls `report(key, what)` for each problem, with the key that names the
/// file ("github_apps[0].private_key_file") and what is wrong with it.
void check_referenced_files(
  const config& cfg,
  const std::function<void(const std::string& key, const std::string& what)>& report);

} // namespace ghscale
