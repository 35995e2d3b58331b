#pragma once
// Structured logging: one line per decision that matters, as logfmt or JSON,
// to stderr. CAF 0.17's own logger is compiled out, so this is the service's
// only log. Callers pass fields, never secrets: values of type secret_string
// cannot be passed here at all.
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>

namespace ghscale::log {

enum class level : uint8_t { trace, debug, info, warn, error, off };

/// One key/value field; numbers are converted by the constructors.
struct field {
  std::string key;
  std::string value;
  bool quoted = true;
  field(std::string k, std::string v) : key(std::move(k)), value(std::move(v)) {}
  field(std::string k, const char* v) : key(std::move(k)), value(v) {}
  field(std::string k, int64_t v);
  field(std::string k, int32_t v) : field(std::move(k), static_cast<int64_t>(v)) {}
  field(std::string k, uint64_t v);
  field(std::string k, double v);
  field(std::string k, bool v);
};

/// Sets the threshold and format ("logfmt" or "json"); false if unknown.
bool configure(const std::string& threshold, const std::string& format);
bool enabled(level lvl);
/// Writes `msg` with its fields as one line if `lvl` passes the threshold.
void write(level lvl, const std::string& msg, std::initializer_list<field> fields);

/// Routes lines to a callback instead of stderr (tests); nullptr restores.
void capture(void (*sink)(const std::string& line));

inline void debug(const std::string& m, std::initializer_list<field> f = {}) { write(level::debug, m, f); }
inline void info(const std::string& m, std::initializer_list<field> f = {}) { write(level::info, m, f); }
inline void warn(const std::string& m, std::initializer_list<field> f = {}) { write(level::warn, m, f); }
inline void error(const std::string& m, std::initializer_list<field> f = {}) { write(level::error, m, f); }

} // namespace ghscale::log
