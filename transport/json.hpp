#pragma once
// How ghscale parses JSON it did not write (webhooks, queue bodies, AWS and
// GitHub answers, instance metadata): strict UTF-8, and an explicit stack on
// the heap instead of recursion, so that a body of a million '[' cannot
// overflow a thread's stack. (Documents use RapidJSON's pool allocator,
// whose values are not freed one by one: destroying a deep one does not
// recurse either.)
#include <rapidjson/document.h>

#include <string_view>

namespace ghscale {

constexpr unsigned outside_json_flags = rapidjson::kParseValidateEncodingFlag
                                        | rapidjson::kParseIterativeFlag;

/// Parses `text` into `doc`; check doc.HasParseError() after.
inline void parse_outside_json(rapidjson::Document& doc, std::string_view text) {
  doc.Parse<outside_json_flags>(text.data(), text.size());
}

} // namespace ghscale
