// The SQS, EC2 and SSM clients against moto_server with SigV4 checking on,
// over the real HTTP engine and the real credential chain (environment
// source), on the real scheduler. moto checks signatures once its first
// INITIAL_NO_AUTH_ACTION_COUNT calls are spent: the setup step spends them
// creating an IAM user with an admin policy and an access key, then creates
// the queue and the launch template signed with that key.
#include "actors/clients/aws_call.hpp"
#include "actors/clients/aws_credentials_provider.hpp"
#include "actors/clients/ec2_client.hpp"
#include "actors/clients/http_client.hpp"
#include "actors/clients/sqs_queue.hpp"
#include "actors/clients/ssm_client.hpp"
#include "messages/actors.hpp"
#include "tests/peer_process.hpp"
#include "transport/aws_credentials.hpp"
#include "transport/aws_protocol.hpp"

#include <caf/all.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// IAM calls moto answers before it starts checking signatures.
constexpr int unauthenticated_setup_calls = 3;

/// Run as `python3 -c '<script>' URL`, so it holds no single quote. Prints,
/// one per line: access key id, secret key, queue URL, launch
/// template name, subnet id.
const char* setup_script = R"PY(
import json, sys, boto3
url = sys.argv[1]
common = dict(endpoint_url=url, region_name="us-east-1")
iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **common)
iam.create_user(UserName="ghscale")
admin = {"Version": "2012-10-17",
         "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.put_user_policy(UserName="ghscale", PolicyName="admin", PolicyDocument=json.dumps(admin))
key = iam.create_access_key(UserName="ghscale")["AccessKey"]
signed = dict(aws_access_key_id=key["AccessKeyId"],
              aws_secret_access_key=key["SecretAccessKey"], **common)
queue = boto3.client("sqs", **signed).create_queue(QueueName="ghscale-jobs")["QueueUrl"]
ec2 = boto3.client("ec2", **signed)
ec2.create_launch_template(LaunchTemplateName="ghscale-runner",
    LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "t3.micro"})
subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]
print(key["AccessKeyId"], key["SecretAccessKey"], queue, "ghscale-runner", subnet, sep="\n")
)PY";

struct moto_world {
  std::unique_ptr<ghscale::testing::peer_process> server;
  std::string access_key;
  std::string secret_key;
  std::string queue_url;
  std::string launch_template;
  std::string subnet;
};

moto_world& moto() {
  static moto_world world;
  return world;
}

std::vector<std::string> run_setup(const std::string& url) {
  std::string command = "python3 -c '" + std::string{setup_script} + "' " + url;
  std::vector<std::string> lines;
  auto pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr)
    return lines;
  char buf[4096];
  std::string out;
  while (auto n = std::fread(buf, 1, sizeof buf, pipe))
    out.append(buf, n);
  if (::pclose(pipe) != 0)
    return {};
  std::istringstream in{out};
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

class AwsPeerTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    auto port = ghscale::testing::free_loopback_port();
    auto& world = moto();
    world.server = std::make_unique<ghscale::testing::peer_process>(
      std::vector<std::string>{"moto_server", "-H", "127.0.0.1", "-p",
                               std::to_string(port)},
      port,
      std::vector<std::string>{"INITIAL_NO_AUTH_ACTION_COUNT="
                               + std::to_string(unauthenticated_setup_calls)});
    auto lines = run_setup(world.server->url());
    ASSERT_EQ(lines.size(), 5u) << "moto setup failed";
    world.access_key = lines[0];
    world.secret_key = lines[1];
    world.queue_url = lines[2];
    world.launch_template = lines[3];
    world.subnet = lines[4];
  }

  static void TearDownTestSuite() {
    moto().server.reset();
  }

  static caf::actor_system_config& prepare(caf::actor_system_config& cfg) {
    register_types(cfg);
    return cfg;
  }

  AwsPeerTest() {
    http = keep(sys.spawn(http_client, http_engine_options{}));
    opts.call_timeout = 10s;
    opts.max_attempts = 2;
    opts.backoff_base = 100ms;
    opts.backoff_max = 1s;
  }

  ~AwsPeerTest() override {
    for (auto& x : spawned)
      self->send_exit(x, caf::exit_reason::user_shutdown);
  }

  template <class Handle>
  Handle keep(Handle x) {
    spawned.push_back(caf::actor_cast<caf::actor>(x));
    return x;
  }

  /// The credential chain, resolving from an environment that holds `secret`.
  aws_credentials_actor credentials(const std::string& secret) {
    std::map<std::string, std::string> env{
      {"AWS_ACCESS_KEY_ID", moto().access_key},
      {"AWS_SECRET_ACCESS_KEY", secret},
      {"AWS_EC2_METADATA_DISABLED", "true"},
    };
    env_lookup lookup = [env](const std::string& name) -> std::optional<std::string> {
      auto i = env.find(name);
      if (i == env.end())
        return std::nullopt;
      return i->second;
    };
    return keep(sys.spawn(aws_credentials_provider, lookup, http_actor{http},
                          aws_credentials_options{}));
  }

  aws_endpoint endpoint(const std::string& service) {
    aws_config aws;
    aws.region = "us-east-1";
    aws.sqs_endpoint = aws.ec2_endpoint = aws.ssm_endpoint = moto().server->url();
    return service_endpoint(aws, service);
  }

  queue_actor spawn_queue(const std::string& secret) {
    queue_config q;
    q.name = "jobs";
    q.url = moto().queue_url;
    return keep(sys.spawn(sqs_queue, q, endpoint("sqs"), credentials(secret),
                          http_actor{http}, opts, stats, 1u));
  }

  /// Asks `dest` and waits (real time) for the answer.
  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dest, Ts&&... xs) {
    caf::expected<T> out{caf::sec::bad_function_call};
    self->request(dest, 60s, std::forward<Ts>(xs)...)
      .receive([&](T& x) { out = std::move(x); },
               [&](caf::error& err) { out = std::move(err); });
    return out;
  }

  caf::actor_system_config cfg;
  caf::actor_system sys{prepare(cfg)};
  caf::scoped_actor self{sys};
  std::vector<caf::actor> spawned;
  http_engine_actor http;
  aws_call_options opts;
  metrics_ptr stats = std::make_shared<metrics>();
};

} // namespace

TEST_F(AwsPeerTest, SqsSendReceiveVisibilityDeleteAndDepth) {
  auto queue = spawn_queue(moto().secret_key);
  std::vector<outgoing_message> out{{"job-1", 0s}, {"job-2", 0s}, {"job-3", 0s}};
  auto sent = ask<batch_result>(queue, atom::enqueue_v, out);
  ASSERT_TRUE(sent) << describe(sent.error());
  EXPECT_EQ(sent->succeeded, (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_TRUE(sent->failed.empty());

  auto depth = ask<queue_depth>(queue, atom::depth_v);
  ASSERT_TRUE(depth) << describe(depth.error());
  EXPECT_EQ(depth->visible, 3);

  receive_request req;
  req.max_messages = 10;
  req.wait = 1s;
  req.visibility = 60s;
  auto first = ask<received_batch>(queue, atom::receive_v, req);
  ASSERT_TRUE(first) << describe(first.error());
  ASSERT_EQ(first->messages.size(), 3u);
  std::vector<std::string> bodies;
  for (auto& m : first->messages) {
    bodies.push_back(m.body);
    EXPECT_EQ(m.receive_count, 1);
  }
  std::sort(bodies.begin(), bodies.end());
  EXPECT_EQ(bodies, (std::vector<std::string>{"job-1", "job-2", "job-3"}));

  // One message becomes visible again at once and is delivered a second time.
  auto again = first->messages[0];
  auto changed = ask<batch_result>(queue, atom::visibility_v,
                                   std::vector<visibility_change>{{again.receipt, 0s}});
  ASSERT_TRUE(changed) << describe(changed.error());
  EXPECT_EQ(changed->succeeded, (std::vector<std::string>{again.receipt}));
  auto second = ask<received_batch>(queue, atom::receive_v, req);
  ASSERT_TRUE(second) << describe(second.error());
  ASSERT_EQ(second->messages.size(), 1u);
  EXPECT_EQ(second->messages[0].body, again.body);
  EXPECT_EQ(second->messages[0].receive_count, 2);

  std::vector<std::string> receipts{second->messages[0].receipt};
  for (size_t i = 1; i < first->messages.size(); ++i)
    receipts.push_back(first->messages[i].receipt);
  auto deleted = ask<batch_result>(queue, atom::remove_v, receipts);
  ASSERT_TRUE(deleted) << describe(deleted.error());
  EXPECT_EQ(deleted->succeeded.size(), 3u);
  EXPECT_TRUE(deleted->failed.empty());

  auto empty = ask<queue_depth>(queue, atom::depth_v);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->visible, 0);
  EXPECT_EQ(empty->in_flight, 0);
}

TEST_F(AwsPeerTest, Ec2CreateFleetDescribeAndTerminate) {
  auto ec2 = keep(sys.spawn(ec2_client, endpoint("ec2"), credentials(moto().secret_key),
                            http_actor{http}, opts, stats, 2u));
  fleet_request req;
  req.client_token = "peer-launch-1";
  req.launch_template = moto().launch_template;
  req.instance_types = {"t3.micro"};
  req.subnets = {moto().subnet};
  req.capacity = capacity_type::on_demand;
  req.count = 2;
  req.tags = {{"ghscale:pool", "peer"}};
  auto fleet = ask<fleet_result>(ec2, atom::fleet_v, req);
  ASSERT_TRUE(fleet) << describe(fleet.error());
  ASSERT_EQ(fleet->instances.size(), 2u);
  EXPECT_TRUE(fleet->errors.empty());
  std::vector<std::string> launched;
  for (auto& instance : fleet->instances) {
    EXPECT_EQ(instance.instance_id.rfind("i-", 0), 0u);
    launched.push_back(instance.instance_id);
  }
  std::sort(launched.begin(), launched.end());

  instance_filter filter;
  filter.tags = {{"ghscale:pool", "peer"}};
  auto found = ask<instance_list>(ec2, atom::describe_v, filter);
  ASSERT_TRUE(found) << describe(found.error());
  std::vector<std::string> described;
  for (auto& instance : found->instances) {
    described.push_back(instance.instance_id);
    EXPECT_EQ(instance.instance_type, "t3.micro");
    EXPECT_EQ(instance.state, instance_state::running);
    ASSERT_FALSE(instance.tags.empty());
  }
  std::sort(described.begin(), described.end());
  EXPECT_EQ(described, launched);

  // CreateTags: the tag shows in DescribeInstances, and filters by it.
  auto tagged = ask<batch_result>(ec2, atom::add_tags_v,
                                  instance_tags{{launched[0]}, {{"ghscale:orphan", "1"}}});
  ASSERT_TRUE(tagged) << describe(tagged.error());
  EXPECT_EQ(tagged->succeeded, std::vector<std::string>{launched[0]});
  instance_filter orphans;
  orphans.tags = {{"ghscale:pool", "peer"}, {"ghscale:orphan", "1"}};
  auto marked = ask<instance_list>(ec2, atom::describe_v, orphans);
  ASSERT_TRUE(marked) << describe(marked.error());
  ASSERT_EQ(marked->instances.size(), 1u);
  EXPECT_EQ(marked->instances[0].instance_id, launched[0]);

  auto terminated = ask<batch_result>(ec2, atom::terminate_v, instance_ids{launched});
  ASSERT_TRUE(terminated) << describe(terminated.error());
  auto gone = terminated->succeeded;
  std::sort(gone.begin(), gone.end());
  EXPECT_EQ(gone, launched);
  EXPECT_TRUE(terminated->failed.empty());

  auto after = ask<instance_list>(ec2, atom::describe_v, filter);
  ASSERT_TRUE(after) << describe(after.error());
  for (auto& instance : after->instances)
    EXPECT_NE(instance.state, instance_state::running) << instance.instance_id;
}

TEST_F(AwsPeerTest, SsmPutGetDelete) {
  auto ssm = keep(sys.spawn(ssm_client, endpoint("ssm"), credentials(moto().secret_key),
                            http_actor{http}, opts, std::string{}, 40.0, stats, 3u));
  parameter param{"/ghscale/runners/i-peer", secret_string{"jit-config-value"},
                  {{"ghscale:pool", "peer"}}};
  auto put = ask<std::string>(ssm, atom::put_param_v, param);
  ASSERT_TRUE(put) << describe(put.error());
  EXPECT_EQ(*put, param.name);
  auto value = ask<secret_string>(ssm, atom::get_param_v, param.name);
  ASSERT_TRUE(value) << describe(value.error());
  EXPECT_EQ(value->value, "jit-config-value");
  auto twice = ask<std::string>(ssm, atom::put_param_v, param);
  ASSERT_FALSE(twice); // never overwritten
  EXPECT_EQ(twice.error(), errc::rejected);
  EXPECT_EQ(describe(twice.error()).find("jit-config-value"), std::string::npos);
  for (int i = 0; i < 2; ++i) { // deleting a deleted parameter is done too
    auto deleted = ask<std::string>(ssm, atom::del_param_v, param.name);
    ASSERT_TRUE(deleted) << describe(deleted.error());
    EXPECT_EQ(*deleted, param.name);
  }
  auto missing = ask<secret_string>(ssm, atom::get_param_v, param.name);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), errc::not_found);
}

TEST_F(AwsPeerTest, AWrongSecretIsRejectedAndSaysSo) {
  const std::string wrong_secret = "not-the-secret-0123456789abcdefghijklmn";
  auto queue = spawn_queue(wrong_secret);
  auto depth = ask<queue_depth>(queue, atom::depth_v);
  ASSERT_FALSE(depth);
  EXPECT_EQ(depth.error(), errc::rejected);
  auto text = describe(depth.error());
  EXPECT_NE(text.find("SQS GetQueueAttributes on " + moto().queue_url), std::string::npos)
    << text;
  EXPECT_NE(text.find("SignatureDoesNotMatch"), std::string::npos) << text;
  EXPECT_EQ(text.find(wrong_secret), std::string::npos);
  EXPECT_EQ(text.find(moto().secret_key), std::string::npos);
}
