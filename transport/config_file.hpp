#pragma once
// The configuration file: TOML, validated strictly. An unknown key, a wrong
// type or an impossible value is an error naming the file, line and key,
// e.g. `ghscale.toml:14:1: pools[0].max_runners: must be >= min_idle (2)`.
#include "messages/config.hpp"

#include <caf/expected.hpp>

#include <string>

namespace ghscale {

/// What a load checks: the values alone, or also every file they name, as
/// `ghscale run` will read it (transport/config_files.hpp): `check-config`
/// and `run` check `files`, so that one refuses what the other would.
enum class config_checks { values, files };

/// Parses and validates TOML text; `source` names it in error messages.
/// Errors: `errc::invalid_config` with the full message as context.
caf::expected<config> parse_config(const std::string& text,
                                   const std::string& source,
                                   config_checks checks = config_checks::values);

/// Reads and parses a file.
caf::expected<config> load_config_file(const std::string& path,
                                       config_checks checks = config_checks::values);

/// The resolved configuration (defaults filled in) as TOML, with secrets
/// masked: what `ghscale check-config FILE` prints.
std::string render_config(const config& cfg);

/// Parses "250ms", "20s", "5m", "1h", "1h30m" (also "0s"). False on error.
bool parse_duration(const std::string& text, caf::timespan& out);
/// Renders a duration in the same syntax, largest exact units.
std::string format_duration(caf::timespan x);

} // namespace ghscale
