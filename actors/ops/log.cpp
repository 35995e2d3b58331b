#include "actors/ops/log.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace ghscale::log {

namespace {
std::atomic<level> threshold{level::info};
std::atomic<bool> json{false};
std::atomic<void (*)(const std::string&)> sink{nullptr};
std::mutex out_mtx;

const char* name(level lvl) {
  switch (lvl) {
    case level::trace: return "trace";
    case level::debug: return "debug";
    case level::info: return "info";
    case level::warn: return "warn";
    case level::error: return "error";
    default: return "off";
  }
}

void append_escaped(std::string& out, const std::string& v) {
  for (char c : v) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20)
          out += ' ';
        else
          out += c;
    }
  }
}

void append_value(std::string& out, const std::string& v, bool quoted) {
  if (!quoted) {
    out += v;
    return;
  }
  out += '"';
  append_escaped(out, v);
  out += '"';
}

std::string timestamp() {
  auto now = std::chrono::system_clock::now();
  auto secs = std::chrono::system_clock::to_time_t(now);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
              now.time_since_epoch()).count() % 1000;
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                tm.tm_min, tm.tm_sec, static_cast<int>(ms));
  return buf;
}
} // namespace

field::field(std::string k, int64_t v)
  : key(std::move(k)), value(std::to_string(v)), quoted(false) {}
field::field(std::string k, uint64_t v)
  : key(std::move(k)), value(std::to_string(v)), quoted(false) {}
field::field(std::string k, double v) : key(std::move(k)), quoted(false) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  value = buf;
}
field::field(std::string k, bool v)
  : key(std::move(k)), value(v ? "true" : "false"), quoted(false) {}

bool configure(const std::string& lvl, const std::string& format) {
  level parsed;
  if (lvl == "trace") parsed = level::trace;
  else if (lvl == "debug") parsed = level::debug;
  else if (lvl == "info") parsed = level::info;
  else if (lvl == "warn") parsed = level::warn;
  else if (lvl == "error") parsed = level::error;
  else if (lvl == "off") parsed = level::off;
  else return false;
  if (format != "logfmt" && format != "json")
    return false;
  threshold = parsed;
  json = format == "json";
  return true;
}

bool enabled(level lvl) {
  return lvl != level::off && lvl >= threshold.load();
}

void capture(void (*s)(const std::string&)) {
  sink = s;
}

void write(level lvl, const std::string& msg,
           std::initializer_list<field> fields) {
  if (!enabled(lvl))
    return;
  std::string line;
  if (json) {
    line = "{\"ts\":\"" + timestamp() + "\",\"level\":\"" + name(lvl)
           + "\",\"msg\":";
    append_value(line, msg, true);
    for (auto& f : fields) {
      line += ",\"";
      append_escaped(line, f.key);
      line += "\":";
      append_value(line, f.value, f.quoted);
    }
    line += '}';
  } else {
    line = "ts=" + timestamp() + " level=" + name(lvl) + " msg=";
    append_value(line, msg, true);
    for (auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      bool bare = !f.quoted
                  || (!f.value.empty()
                      && f.value.find_first_of(" \"=\\\n\t") == std::string::npos);
      append_value(line, f.value, !bare);
    }
  }
  if (auto s = sink.load()) {
    s(line);
    return;
  }
  std::lock_guard<std::mutex> guard{out_mtx};
  std::fputs(line.c_str(), stderr);
  std::fputc('\n', stderr);
}

} // namespace ghscale::log
