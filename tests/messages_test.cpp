#include "messages/actors.hpp"

#include <gtest/gtest.h>

using namespace ghscale;

TEST(Messages, SecretsPrintMasked) {
  runner_registration reg{42, secret_string{"super-secret-jit"}};
  auto text = caf::deep_to_string(reg);
  EXPECT_EQ(text.find("super-secret-jit"), std::string::npos) << text;
  EXPECT_NE(text.find("***"), std::string::npos) << text;
}

TEST(Messages, SecretsSerializeForRemoteNodes) {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  std::vector<char> buf;
  caf::binary_serializer sink{sys, buf};
  runner_registration in{7, secret_string{"jit"}};
  ASSERT_FALSE(sink(in));
  caf::binary_deserializer source{sys, buf};
  runner_registration out;
  ASSERT_FALSE(source(out));
  EXPECT_EQ(out.runner_id, 7);
  EXPECT_EQ(out.config.value, "jit");
}

TEST(Messages, ErrorsRenderWithCategory) {
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  auto err = caf::make_error(errc::throttled, "CreateFleet");
  EXPECT_EQ(sys.render(err), "ghscale: throttled: CreateFleet");
}
