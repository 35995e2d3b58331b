#pragma once
// The configuration and trace `ghscale simulate` uses with no arguments,
// compiled in from conf/simulate.toml and conf/traces/burst-500.jsonl.
namespace ghscale::scenario {
extern const char* const default_config_text;
extern const char* const default_trace_text;
} // namespace ghscale::scenario
