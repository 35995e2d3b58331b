#pragma once
// How ghscale parses JSON it did not write (webhooks, queue bodies, AWS and
// GitHub answers, instance metadata): strict UTF-8, and an explicit stack on
// the heap instead of recursion, so that a body of a million '[' cannot
// overflow a thread's stack. (Documents use RapidJSON's pool allocator,
// whose values are not freed one by one: destroying a deep one does not
// recurse either.)
#include <rapidjson/document.h>

#include <cstddef>
#include <string_view>

namespace ghscale {

constexpr unsigned outside_json_flags = rapidjson::kParseValidateEncodingFlag
                                        | rapidjson::kParseIterativeFlag;

/// True if `text` opens more than `limit` arrays and objects at once
/// (brackets inside strings do not count). For JSON that is written back
/// out: RapidJSON's writer recurses once per level.
inline bool json_depth_over(std::string_view text, size_t limit) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit)
        return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

/// Parses `text` into `doc`; check doc.HasParseError() after.
inline void parse_outside_json(rapidjson::Document& doc, std::string_view text) {
  doc.Parse<outside_json_flags>(text.data(), text.size());
}

} // namespace ghscale
