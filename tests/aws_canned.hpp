#pragma once
// Canned AWS answers (tests/data/aws), read by the protocol and client tests.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

namespace ghscale::testing {

inline std::string canned(const std::string& name) {
  std::ifstream in{std::string{GHSCALE_SOURCE_DIR} + "/tests/data/aws/" + name};
  EXPECT_TRUE(in) << "missing canned answer " << name;
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

} // namespace ghscale::testing
