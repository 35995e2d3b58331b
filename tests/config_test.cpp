#include "transport/config_file.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

// A minimal valid configuration. Tests append lines (which then belong to
// [[pools]] unless they open a new table) or swap one line for another, and
// assert the line number the error names. Line numbers:
const std::string minimal = //
  "[[queues]]\n"                    //  1
  "name = \"jobs\"\n"               //  2
  "dead_letter = \"dlq\"\n"         //  3
  "[[queues]]\n"                    //  4
  "name = \"dlq\"\n"                //  5
  "[[github_apps]]\n"               //  6
  "name = \"app\"\n"                //  7
  "[[pools]]\n"                     //  8
  "name = \"p\"\n"                  //  9
  "queue = \"jobs\"\n"              // 10
  "github_app = \"app\"\n"          // 11
  "labels = [\"x\"]\n"              // 12
  "instance_types = [\"m5.large\"]\n"; // 13

/// `minimal` with one line replaced (same number of lines, so the others keep
/// their numbers).
std::string replace_line(const std::string& line, const std::string& with) {
  auto text = minimal;
  auto at = text.find(line + "\n");
  if (at == std::string::npos)
    throw std::logic_error("no such line in minimal: " + line);
  return text.replace(at, line.size(), with);
}

std::string error_text(const caf::expected<config>& result) {
  if (result)
    return "(no error)";
  EXPECT_EQ(result.error().category(), caf::atom("ghscale"));
  EXPECT_EQ(result.error().code(), static_cast<uint8_t>(errc::invalid_config));
  auto& context = result.error().context();
  if (context.size() != 1 || !context.match_element<std::string>(0))
    return "(error without a message)";
  return context.get_as<std::string>(0);
}

std::string source_file(const std::string& relative) {
  return std::string{GHSCALE_SOURCE_DIR} + "/" + relative;
}

std::string read_text(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

struct rejection {
  std::string text;     // the whole document
  std::string where;    // "t.toml:LINE:COL: KEY-PATH: "
  std::string fragment; // part of the explanation
};

void expect_rejections(const std::vector<rejection>& cases) {
  for (auto& c : cases) {
    SCOPED_TRACE(c.text);
    auto result = parse_config(c.text, "t.toml");
    auto message = error_text(result);
    EXPECT_NE(message.find(c.where), std::string::npos) << message;
    EXPECT_NE(message.find(c.fragment), std::string::npos) << message;
  }
}

} // namespace

// -- shipped files -------------------------------------------------------------

TEST(ConfigFiles, EveryShippedFileParses) {
  size_t files = 0;
  for (auto& entry : std::filesystem::directory_iterator{source_file("conf")}) {
    if (entry.path().extension() != ".toml")
      continue;
    ++files;
    auto result = load_config_file(entry.path().string());
    EXPECT_TRUE(result) << error_text(result);
  }
  EXPECT_GE(files, 3u);
}

TEST(ConfigFiles, SimulateDefaults) {
  auto cfg = load_config_file(source_file("conf/simulate.toml"));
  ASSERT_TRUE(cfg) << error_text(cfg);
  EXPECT_EQ(cfg->aws.backend, backend_kind::embedded);
  ASSERT_EQ(cfg->queues.size(), 2u);
  auto& jobs = cfg->queues[0];
  EXPECT_EQ(jobs.name, "jobs");
  EXPECT_EQ(jobs.backend, backend_kind::embedded);
  EXPECT_EQ(jobs.dead_letter, "jobs-dlq");
  EXPECT_EQ(jobs.visibility_timeout, caf::timespan{30s});
  EXPECT_EQ(jobs.wait_time, caf::timespan{20s});
  EXPECT_EQ(jobs.batch_size, 10);
  EXPECT_EQ(jobs.max_receive_count, 100);
  EXPECT_EQ(jobs.min_loops, 2);
  EXPECT_EQ(jobs.max_loops, 2);
  EXPECT_EQ(cfg->queues[1].name, "jobs-dlq");
  ASSERT_EQ(cfg->github_apps.size(), 1u);
  EXPECT_EQ(cfg->github_apps[0].name, "sim-app");
  EXPECT_EQ(cfg->github_apps[0].backend, backend_kind::embedded);
  ASSERT_EQ(cfg->pools.size(), 2u);
  auto& x64 = cfg->pools[0];
  EXPECT_EQ(x64.name, "linux-x64");
  EXPECT_EQ(x64.labels, (std::vector<std::string>{"self-hosted", "linux", "x64"}));
  EXPECT_EQ(x64.match, label_match::subset);
  EXPECT_EQ(x64.priority, 10);
  EXPECT_TRUE(x64.org_level);
  EXPECT_EQ(x64.mode, runner_mode::ephemeral);
  EXPECT_EQ(x64.max_runners, 100);
  EXPECT_EQ(x64.min_idle, 0);
  EXPECT_EQ(x64.instance_types,
            (std::vector<std::string>{"m5.large", "m5a.large", "m6i.large"}));
  EXPECT_EQ(x64.subnets, (std::vector<std::string>{"subnet-a", "subnet-b"}));
  EXPECT_EQ(x64.launch_template, "lt-ghscale-linux");
  EXPECT_EQ(x64.capacity, capacity_type::spot);
  EXPECT_EQ(x64.on_demand_failover,
            (std::vector<std::string>{"InsufficientInstanceCapacity"}));
  auto& arm = cfg->pools[1];
  EXPECT_EQ(arm.name, "linux-arm64");
  EXPECT_EQ(arm.labels, (std::vector<std::string>{"self-hosted", "linux", "arm64"}));
  EXPECT_EQ(arm.match, label_match::subset);
  EXPECT_EQ(arm.priority, 5);
  EXPECT_EQ(arm.mode, runner_mode::ephemeral);
  EXPECT_EQ(arm.max_runners, 20);
  EXPECT_EQ(arm.instance_types, (std::vector<std::string>{"m7g.large", "c7g.large"}));
  EXPECT_EQ(arm.capacity, capacity_type::on_demand);
  EXPECT_EQ(cfg->scaler.window, caf::timespan{250ms});
  EXPECT_EQ(cfg->simulation.seed, 42u);
  EXPECT_EQ(cfg->simulation.boot_delay, caf::timespan{40s});
  EXPECT_EQ(cfg->simulation.github_writes_per_minute, 0);
  EXPECT_EQ(cfg->simulation.ec2_fleet_burst, simulation_config{}.ec2_fleet_burst);
  EXPECT_EQ(cfg->simulation.token_ttl, simulation_config{}.token_ttl);
  EXPECT_EQ(cfg->logging.level, "warn");
}

TEST(ConfigFiles, ExampleIsARemoteDeployment) {
  auto cfg = load_config_file(source_file("conf/ghscale.example.toml"));
  ASSERT_TRUE(cfg) << error_text(cfg);
  EXPECT_EQ(cfg->aws.backend, backend_kind::remote);
  auto jobs = cfg->find_queue("jobs");
  ASSERT_NE(jobs, nullptr);
  EXPECT_EQ(jobs->backend, backend_kind::remote);
  ASSERT_NE(cfg->find_queue(jobs->dead_letter), nullptr);
  ASSERT_EQ(cfg->github_apps.size(), 1u);
  EXPECT_EQ(cfg->github_apps[0].backend, backend_kind::remote);
  ASSERT_EQ(cfg->pools.size(), 2u);
  EXPECT_EQ(cfg->pools[0].capacity, capacity_type::spot);
  EXPECT_EQ(cfg->pools[0].on_demand_failover,
            (std::vector<std::string>{"InsufficientInstanceCapacity",
                                      "MaxSpotInstanceCountExceeded",
                                      "SpotMaxPriceTooLow"}));
  EXPECT_FALSE(cfg->pools[1].org_level);
  EXPECT_EQ(cfg->pools[1].mode, runner_mode::reusable);
}

TEST(ConfigFiles, ExampleSetsEveryKey) {
  // The example documents every key: rendering it (which writes every key)
  // must not add a line the example lacks.
  auto example = read_text(source_file("conf/ghscale.example.toml"));
  auto cfg = parse_config(example, "example");
  ASSERT_TRUE(cfg) << error_text(cfg);
  std::istringstream rendered{render_config(*cfg)};
  for (std::string line; std::getline(rendered, line);) {
    auto eq = line.find(" = ");
    if (eq == std::string::npos)
      continue;
    auto key = "\n" + line.substr(0, eq) + " = ";
    EXPECT_NE(example.find(key), std::string::npos) << line;
  }
}

TEST(ConfigFiles, MissingFileNamesThePath) {
  auto result = load_config_file("/nonexistent/ghscale.toml");
  auto message = error_text(result);
  EXPECT_NE(message.find("'/nonexistent/ghscale.toml'"), std::string::npos)
    << message;
  EXPECT_NE(message.find("No such file"), std::string::npos) << message;
  message = error_text(load_config_file(source_file("conf")));
  EXPECT_NE(message.find("is a directory"), std::string::npos) << message;
}

// -- defaults ------------------------------------------------------------------

TEST(ConfigDefaults, AppliedToEveryAbsentKey) {
  auto cfg = parse_config(minimal, "t.toml");
  ASSERT_TRUE(cfg) << error_text(cfg);
  auto& q = cfg->queues[0];
  EXPECT_EQ(q.backend, backend_kind::embedded);
  EXPECT_EQ(q.visibility_timeout, caf::timespan{30s});
  EXPECT_EQ(q.wait_time, caf::timespan{20s});
  EXPECT_EQ(q.batch_size, 10);
  EXPECT_EQ(q.max_receive_count, 100);
  EXPECT_EQ(q.min_loops, 1);
  EXPECT_EQ(q.max_loops, 1);
  auto& app = cfg->github_apps[0];
  EXPECT_EQ(app.base_url, "https://api.github.com");
  EXPECT_EQ(app.max_concurrency, 20);
  EXPECT_EQ(app.writes_per_minute, 80);
  EXPECT_EQ(app.token_refresh_before, caf::timespan{5min});
  auto& p = cfg->pools[0];
  EXPECT_EQ(p.match, label_match::exact);
  EXPECT_EQ(p.priority, 0);
  EXPECT_TRUE(p.org_level);
  EXPECT_EQ(p.runner_group, "Default");
  EXPECT_EQ(p.mode, runner_mode::ephemeral);
  EXPECT_EQ(p.max_runners, 10);
  EXPECT_EQ(p.min_idle, 0);
  EXPECT_EQ(p.capacity, capacity_type::spot);
  EXPECT_TRUE(p.on_demand_failover.empty());
  EXPECT_TRUE(p.job_queued_check);
  EXPECT_EQ(cfg->aws.region, "us-east-1");
  EXPECT_EQ(cfg->aws.parameter_prefix, "/ghscale/runners");
  EXPECT_EQ(cfg->scaler.window, caf::timespan{250ms});
  EXPECT_EQ(cfg->scaler.max_batch, 100);
  EXPECT_EQ(cfg->retry.base, caf::timespan{5s});
  EXPECT_EQ(cfg->retry.max, caf::timespan{1min});
  EXPECT_DOUBLE_EQ(cfg->retry.jitter, 0.2);
  EXPECT_EQ(cfg->supervision.max_restarts, 5);
  EXPECT_EQ(cfg->supervision.initial_backoff, caf::timespan{100ms});
  EXPECT_EQ(cfg->timeouts.launch, caf::timespan{120s});
  EXPECT_EQ(cfg->timeouts.drain, caf::timespan{30s});
  EXPECT_EQ(cfg->simulation.seed, 42u);
  EXPECT_DOUBLE_EQ(cfg->simulation.ec2_fleet_refill, 5.0);
  EXPECT_EQ(cfg->simulation.github_hourly_limit, 15000);
  EXPECT_EQ(cfg->logging.level, "info");
  EXPECT_EQ(cfg->logging.format, "logfmt");
}

TEST(ConfigDefaults, ValuesOfEveryTypeAreRead) {
  auto cfg = parse_config(minimal
                            + "level = \"repo\"\n"
                              "mode = \"reusable\"\n"
                              "capacity = \"on-demand\"\n"
                              "job_queued_check = false\n"
                              "priority = -3\n"
                              "[retry]\n"
                              "jitter = 0\n"
                              "[simulation]\n"
                              "seed = 7\n"
                              "ec2_fleet_refill = 2.5\n"
                              "[aws]\n"
                              "sqs_endpoint = \"http://127.0.0.1:5000\"\n",
                          "t.toml");
  ASSERT_TRUE(cfg) << error_text(cfg);
  auto& p = cfg->pools[0];
  EXPECT_FALSE(p.org_level);
  EXPECT_EQ(p.mode, runner_mode::reusable);
  EXPECT_EQ(p.capacity, capacity_type::on_demand);
  EXPECT_FALSE(p.job_queued_check);
  EXPECT_EQ(p.priority, -3);
  EXPECT_DOUBLE_EQ(cfg->retry.jitter, 0.0);
  EXPECT_EQ(cfg->simulation.seed, 7u);
  EXPECT_DOUBLE_EQ(cfg->simulation.ec2_fleet_refill, 2.5);
  EXPECT_EQ(cfg->aws.sqs_endpoint, "http://127.0.0.1:5000");
}

// -- structure: unknown keys, wrong types, syntax -------------------------------

TEST(ConfigStructure, UnknownKeysAreRejected) {
  expect_rejections({
    {"colour = 1\n" + minimal, "t.toml:1:1: ", "unknown key 'colour' at the top level"},
    {minimal + "[sclaer]\nwindow = \"1s\"\n", "t.toml:14:2: ",
     "unknown key 'sclaer' at the top level"},
    {minimal + "[retry]\nbsae = \"1s\"\n", "t.toml:15:1: ",
     "unknown key 'bsae' in retry"},
    {minimal + "  visibilty_timeout = \"1s\"\n", "t.toml:14:3: ",
     "unknown key 'visibilty_timeout' in pools[0]"},
    {replace_line("name = \"dlq\"", "visibilty_timeout = \"1s\""), "t.toml:5:1: ",
     "unknown key 'visibilty_timeout' in queues[1]"},
    {minimal + "org_level = true\n", "t.toml:14:1: ",
     "unknown key 'org_level' in pools[0]"},
  });
}

TEST(ConfigStructure, WrongTypesAreRejected) {
  expect_rejections({
    {minimal + "max_runners = \"10\"\n", "t.toml:14:1: pools[0].max_runners: ",
     "expected an integer, got a string"},
    {minimal + "max_runners = 9999999999\n", "t.toml:14:1: pools[0].max_runners: ",
     "out of range (9999999999)"},
    {minimal + "job_queued_check = \"yes\"\n",
     "t.toml:14:1: pools[0].job_queued_check: ", "expected a boolean"},
    {replace_line("labels = [\"x\"]", "labels = \"x\""),
     "t.toml:12:1: pools[0].labels: ", "expected an array of strings, got a string"},
    {replace_line("labels = [\"x\"]", "labels = [\"x\", 2]"),
     "t.toml:12:1: pools[0].labels[1]: ", "expected a string, got an integer"},
    {minimal + "match = 1\n", "t.toml:14:1: pools[0].match: ",
     "expected one of \"exact\", \"subset\", got an integer"},
    {minimal + "match = \"fuzzy\"\n", "t.toml:14:1: pools[0].match: ",
     "invalid value \"fuzzy\" (expected one of \"exact\", \"subset\")"},
    {minimal + "level = \"cluster\"\n", "t.toml:14:1: pools[0].level: ",
     "expected one of \"org\", \"repo\""},
    {minimal + "capacity = \"on_demand\"\n", "t.toml:14:1: pools[0].capacity: ",
     "expected one of \"spot\", \"on-demand\""},
    {minimal + "[scaler]\nwindow = 250\n", "t.toml:15:1: scaler.window: ",
     "expected a duration string such as \"20s\", got an integer"},
    {minimal + "[scaler]\nwindow = \"quarter second\"\n",
     "t.toml:15:1: scaler.window: ", "invalid duration \"quarter second\""},
    {minimal + "[retry]\njitter = \"0.2\"\n", "t.toml:15:1: retry.jitter: ",
     "expected a number, got a string"},
    {minimal + "[retry]\njitter = nan\n", "t.toml:15:1: retry.jitter: ",
     "must be a finite number"},
    {minimal + "[simulation]\nseed = -1\n", "t.toml:15:1: simulation.seed: ",
     "must be >= 0"},
    {"aws = 1\n" + minimal, "t.toml:1:1: aws: ", "expected a table [aws], got an integer"},
    {"queues = 1\n", "t.toml:1:1: queues: ",
     "expected an array of tables [[queues]], got an integer"},
    {"queues = [1]\n", "t.toml:1:1: queues[0]: ", "expected a table, got an integer"},
  });
}

TEST(ConfigStructure, SyntaxErrorsNameTheLine) {
  auto message = error_text(parse_config(minimal + "max_runners =\n", "t.toml"));
  EXPECT_EQ(message.rfind("t.toml:14:", 0), 0u) << message;
}

TEST(ConfigStructure, AllErrorsReportedInFileOrder) {
  auto message = error_text(parse_config(
    replace_line("name = \"dlq\"", "bogus = 1") + "max_runners = \"x\"\n", "t.toml"));
  EXPECT_EQ(message, "t.toml:5:1: unknown key 'bogus' in queues[1]\n"
                     "t.toml:14:1: pools[0].max_runners: expected an integer, "
                     "got a string");
}

TEST(ConfigStructure, InlineTablesAreCheckedAlike) {
  const std::string inline_form =
    "queues = [{ name = \"a\", dead_letter = \"b\" }, { name = \"b\" }]\n"
    "github_apps = [{ name = \"g\" }]\n"
    "aws = { region = \"eu-west-1\" }\n"
    "pools = [{ name = \"p\", queue = \"a\", github_app = \"g\", labels = [\"x\"], "
    "instance_types = [\"t3.micro\"] }]\n";
  auto cfg = parse_config(inline_form, "t.toml");
  ASSERT_TRUE(cfg) << error_text(cfg);
  EXPECT_EQ(cfg->aws.region, "eu-west-1");
  EXPECT_EQ(cfg->pools[0].instance_types, (std::vector<std::string>{"t3.micro"}));
  auto bogus = inline_form;
  bogus.insert(bogus.find("instance_types"), "bogus = 1, ");
  auto message = error_text(parse_config(bogus, "t.toml"));
  EXPECT_NE(message.find("t.toml:4:"), std::string::npos) << message;
  EXPECT_NE(message.find("unknown key 'bogus' in pools[0]"), std::string::npos) << message;
}

// -- values ----------------------------------------------------------------------

TEST(ConfigValidation, QueuesAndPoolsAreRequired) {
  expect_rejections({
    {"", "t.toml:1:1: queues: ", "at least one [[queues]] entry is required"},
    {minimal.substr(0, minimal.find("[[pools]]")), "t.toml:1:1: pools: ",
     "at least one [[pools]] entry is required"},
  });
}

TEST(ConfigValidation, NamesAreSetAndUnique) {
  expect_rejections({
    {minimal + "[[queues]]\nname = \"jobs\"\n", "t.toml:15:1: queues[2].name: ",
     "duplicate name 'jobs' (also queues[0])"},
    {minimal + "[[github_apps]]\nname = \"app\"\n",
     "t.toml:15:1: github_apps[1].name: ", "duplicate name 'app' (also github_apps[0])"},
    {minimal + "[[pools]]\nname = \"p\"\nqueue = \"jobs\"\ngithub_app = \"app\"\n"
               "labels = [\"y\"]\ninstance_types = [\"m5.large\"]\n",
     "t.toml:15:1: pools[1].name: ", "duplicate name 'p' (also pools[0])"},
    {replace_line("name = \"p\"", "# nameless"), "t.toml:8:1: pools[0].name: ",
     "must be set"},
  });
}

TEST(ConfigValidation, PoolReferences) {
  expect_rejections({
    {replace_line("queue = \"jobs\"", "queue = \"nope\""),
     "t.toml:10:1: pools[0].queue: ", "names no configured queue 'nope'"},
    {replace_line("queue = \"jobs\"", "# no queue"), "t.toml:8:1: pools[0].queue: ",
     "must be set"},
    {replace_line("github_app = \"app\"", "github_app = \"other\""),
     "t.toml:11:1: pools[0].github_app: ", "names no configured GitHub App 'other'"},
    {replace_line("github_app = \"app\"", "# no app"),
     "t.toml:8:1: pools[0].github_app: ", "must be set"},
  });
}

TEST(ConfigValidation, DeadLetterQueues) {
  expect_rejections({
    {replace_line("dead_letter = \"dlq\"", "# no dead letter queue"),
     "t.toml:1:1: queues[0].dead_letter: ", "required: pool 'p' takes jobs from this queue"},
    {replace_line("dead_letter = \"dlq\"", "dead_letter = \"ghost\""),
     "t.toml:3:1: queues[0].dead_letter: ", "names no configured queue 'ghost'"},
    {replace_line("dead_letter = \"dlq\"", "dead_letter = \"jobs\""),
     "t.toml:3:1: queues[0].dead_letter: ", "a queue cannot be its own dead-letter queue"},
    {minimal + "[[queues]]\nname = \"sqs\"\nbackend = \"remote\"\n"
               "url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\ndead_letter = \"dlq\"\n",
     "t.toml:18:1: queues[2].dead_letter: ", "queue 'dlq' must use the same backend (remote)"},
  });
}

TEST(ConfigValidation, QueueValues) {
  auto queue = [](const std::string& line) {
    return minimal + "[[queues]]\nname = \"q\"\n" + line + "\n"; // line 16
  };
  expect_rejections({
    {queue("visibility_timeout = \"0s\""), "t.toml:16:1: queues[2].visibility_timeout: ",
     "must be > 0s"},
    {queue("visibility_timeout = \"13h\""), "t.toml:16:1: queues[2].visibility_timeout: ",
     "must be <= 12h"},
    {queue("wait_time = \"21s\""), "t.toml:16:1: queues[2].wait_time: ",
     "must be within 0s..20s (got 21s)"},
    {queue("batch_size = 0"), "t.toml:16:1: queues[2].batch_size: ",
     "must be within 1..10 (got 0)"},
    {queue("batch_size = 11"), "t.toml:16:1: queues[2].batch_size: ",
     "must be within 1..10 (got 11)"},
    {queue("max_receive_count = 0"), "t.toml:16:1: queues[2].max_receive_count: ",
     "must be >= 1"},
    {queue("min_loops = 0"), "t.toml:16:1: queues[2].min_loops: ", "must be >= 1"},
    {queue("min_loops = 3\nmax_loops = 2"), "t.toml:17:1: queues[2].max_loops: ",
     "must be >= min_loops (3)"},
    {queue("min_loops = 3"), "t.toml:16:1: queues[2].min_loops: ",
     "must be <= max_loops (1)"},
    {queue("backend = \"remote\""), "t.toml:14:1: queues[2].url: ",
     "required for a remote queue"},
    {queue("url = \"sqs://queue\""), "t.toml:16:1: queues[2].url: ",
     "invalid URL 'sqs://queue': scheme must be http or https"},
    {queue("url = \"https://\""), "t.toml:16:1: queues[2].url: ",
     "invalid URL 'https://': no host"},
    {queue("url = \"https:///q\""), "t.toml:16:1: queues[2].url: ", "no host"},
    {queue("url = \"http://sqs.example/q\""), "t.toml:16:1: queues[2].url: ",
     "must be an https:// URL (http:// only for 127.0.0.1 or localhost)"},
    {queue("url = \"https://key:secret@sqs.example/q\""), "t.toml:16:1: queues[2].url: ",
     "credentials in URLs are not accepted"},
  });
  EXPECT_TRUE(parse_config(queue("wait_time = \"0s\""), "t.toml"));
  // Schemes and hosts are case-insensitive.
  for (auto url : {"HTTPS://sqs.example/q", "Https://SQS.example/q", "HTTP://LOCALHOST:9324/q"}) {
    auto cfg = parse_config(queue(std::string{"url = \""} + url + "\"\nbackend = \"remote\""),
                            "t.toml");
    EXPECT_TRUE(cfg) << url << ": " << error_text(cfg);
  }
  auto secret_url = parse_config(queue("url = \"https://key:s3cr3t@sqs.example/q\""), "t.toml");
  ASSERT_FALSE(secret_url);
  EXPECT_EQ(error_text(secret_url).find("s3cr3t"), std::string::npos) << error_text(secret_url);
}

TEST(ConfigValidation, PollLoopsReaperJobRetryAndServer) {
  expect_rejections({
    {minimal + "[[queues]]\nname = \"q\"\nscale_up_depth = 5\n",
     "t.toml:16:1: queues[2].scale_up_depth: ", "must be > scale_down_depth (10)"},
    {minimal + "[[queues]]\nname = \"q\"\nbackend = \"remote\"\n"
               "url = \"https://sqs/q\"\nstorage = \"/tmp/q.db\"\n",
     "t.toml:18:1: queues[2].storage: ", "only embedded queues have local storage"},
    {minimal + "reap_interval = \"0s\"\n", "t.toml:14:1: pools[0].reap_interval: ",
     "must be > 0s"},
    {minimal + "idle_schedule = [{ cron = \"* 25 * * *\", min_idle = 1 }]\n",
     "t.toml:14:", "pools[0].idle_schedule[0]"},
    {minimal + "idle_schedule = [{ cron = \"* * * * *\", timezone = \"Mars/Olympus\" }]\n",
     "t.toml:14:", "Mars/Olympus"},
    {minimal + "idle_schedule = [{ cron = \"* * * * *\", min_idle = 11 }]\n",
     "t.toml:14:", "min_idle: must be within 0..10 (got 11)"},
    {minimal + "idle_schedule = [{ cron = \"* * * * *\", idle = 1 }]\n",
     "t.toml:14:", "unknown key 'idle' in pools[0].idle_schedule[0]"},
    {minimal + "[poll_loops]\nstale_after = \"5s\"\n",
     "t.toml:15:1: poll_loops.stale_after: ", "must be >= twice poll_loops.heartbeat (10s)"},
    {minimal + "[job_retry]\nmax_attempts = 0\n", "t.toml:15:1: job_retry.max_attempts: ",
     "must be >= 1"},
    {minimal + "[job_retry]\ndelay = \"1h\"\n", "t.toml:15:1: job_retry.delay: ",
     "must be <= max_delay (10m)"},
    {minimal + "[server]\nlisten = \"8080\"\n", "t.toml:15:1: server.listen: ",
     "must be host:port"},
    {minimal + "[server]\nlisten = \":8080\"\nwebhook_queue = \"nope\"\n",
     "t.toml:16:1: server.webhook_queue: ", "names no configured queue 'nope'"},
    {minimal + "[server]\nlisten = \":8080\"\nwebhook_queue = \"jobs\"\n",
     "server.webhook_secret_files", "must not be empty"},
  });
  auto cfg = parse_config(
    minimal
      + "idle_schedule = [{ cron = \"*/5 8-18 * * mon-fri\", timezone = \"Europe/Berlin\", min_idle = 2 }]\n"
        "[server]\nlisten = \"127.0.0.1:8080\"\nwebhook_queue = \"jobs\"\n"
        "webhook_secret_files = [\"/run/secret\"]\n",
    "t.toml");
  ASSERT_TRUE(cfg) << error_text(cfg);
  ASSERT_EQ(cfg->pools[0].idle_schedule.size(), 1u);
  EXPECT_EQ(cfg->pools[0].idle_schedule[0].timezone, "Europe/Berlin");
  EXPECT_EQ(cfg->pools[0].idle_schedule[0].min_idle, 2);
  EXPECT_EQ(cfg->server.webhook_queue, "jobs");
  // Rendering writes the schedule inline, and it reads back the same.
  auto again = parse_config(render_config(*cfg), "rendered");
  ASSERT_TRUE(again) << error_text(again);
  EXPECT_EQ(again->pools[0].idle_schedule[0].cron, "*/5 8-18 * * mon-fri");
}

TEST(ConfigValidation, PoolValues) {
  expect_rejections({
    {minimal + "max_runners = 0\n", "t.toml:14:1: pools[0].max_runners: ", "must be >= 1"},
    {minimal + "min_idle = -1\n", "t.toml:14:1: pools[0].min_idle: ", "must be >= 0"},
    {minimal + "max_runners = 2\nmin_idle = 3\n", "t.toml:14:1: pools[0].max_runners: ",
     "must be >= min_idle (3)"},
    {minimal + "min_idle = 11\n", "t.toml:14:1: pools[0].min_idle: ",
     "must be <= max_runners (10)"},
    {replace_line("labels = [\"x\"]", "labels = []"), "t.toml:12:1: pools[0].labels: ",
     "must not be empty"},
    {replace_line("labels = [\"x\"]", "labels = [\"x\", \"\"]"),
     "t.toml:12:1: pools[0].labels[1]: ", "must not be empty"},
    {replace_line("labels = [\"x\"]", "labels = [\"x\", \" \\t \"]"),
     "t.toml:12:1: pools[0].labels[1]: ", "must not be empty or blank"},
    {replace_line("labels = [\"x\"]", "# no labels"), "t.toml:8:1: pools[0].labels: ",
     "must not be empty"},
    {replace_line("instance_types = [\"m5.large\"]", "instance_types = []"),
     "t.toml:13:1: pools[0].instance_types: ", "must not be empty"},
    {minimal + "runner_group = \"\"\n", "t.toml:14:1: pools[0].runner_group: ",
     "must be set"},
    {minimal + "on_demand_failover = [\"\"]\n",
     "t.toml:14:1: pools[0].on_demand_failover[0]: ", "must be set"},
    {minimal + "[aws]\nbackend = \"remote\"\n", "t.toml:8:1: pools[0].subnets: ",
     "must not be empty with the remote AWS backend"},
    {minimal + "subnets = [\"s\"]\n[aws]\nbackend = \"remote\"\n",
     "t.toml:8:1: pools[0].launch_template: ", "must be set with the remote AWS backend"},
  });
  // Failover codes are harmless on an on-demand pool, subnets and templates
  // optional on the embedded backend.
  EXPECT_TRUE(parse_config(minimal + "capacity = \"on-demand\"\n"
                                     "on_demand_failover = [\"SpotMaxPriceTooLow\"]\n",
                           "t.toml"));
  auto remote = parse_config(minimal + "subnets = [\"s\"]\nlaunch_template = \"lt\"\n"
                                       "[aws]\nbackend = \"remote\"\n",
                             "t.toml");
  EXPECT_TRUE(remote) << error_text(remote);
}

TEST(ConfigValidation, GitHubAppValues) {
  auto app = [](const std::string& lines) {
    return minimal + "[[github_apps]]\nname = \"g\"\n" + lines + "\n"; // line 16
  };
  expect_rejections({
    {app("backend = \"remote\"\nprivate_key_file = \"/k.pem\""),
     "t.toml:14:1: github_apps[1].app_id: ", "must be > 0 for a remote app"},
    {app("backend = \"remote\"\napp_id = 1"), "t.toml:14:1: github_apps[1]: ",
     "exactly one of private_key_file and private_key_parameter"},
    {app("backend = \"remote\"\napp_id = 1\nprivate_key_file = \"/k.pem\"\n"
         "private_key_parameter = \"/k\""),
     "t.toml:14:1: github_apps[1]: ", "exactly one of private_key_file"},
    {app("app_id = -1"), "t.toml:16:1: github_apps[1].app_id: ", "must be >= 0"},
    {app("base_url = \"http://api.github.com\""), "t.toml:16:1: github_apps[1].base_url: ",
     "must be an https:// URL"},
    {app("base_url = \"http://localhost.example.com\""),
     "t.toml:16:1: github_apps[1].base_url: ", "must be an https:// URL"},
    {app("base_url = \"https://x-access-token:ghs_abc@github.example/api/v3\""),
     "t.toml:16:1: github_apps[1].base_url: ", "credentials in URLs are not accepted"},
    {app("base_url = \"https://\""), "t.toml:16:1: github_apps[1].base_url: ", "no host"},
    {app("base_url = \"\""), "t.toml:16:1: github_apps[1].base_url: ", "must be set"},
    {app("max_concurrency = 0"), "t.toml:16:1: github_apps[1].max_concurrency: ",
     "must be within 1..100 (got 0)"},
    {app("max_concurrency = 101"), "t.toml:16:1: github_apps[1].max_concurrency: ",
     "must be within 1..100 (got 101)"},
    {app("writes_per_minute = 0"), "t.toml:16:1: github_apps[1].writes_per_minute: ",
     "must be >= 1"},
    {app("points_per_minute = 0"), "t.toml:16:1: github_apps[1].points_per_minute: ",
     "must be >= 1"},
    {app("token_refresh_before = \"0s\""),
     "t.toml:16:1: github_apps[1].token_refresh_before: ", "must be > 0s"},
    {app("request_timeout = \"0s\""), "t.toml:16:1: github_apps[1].request_timeout: ",
     "must be > 0s"},
    {app("max_retries = -1"), "t.toml:16:1: github_apps[1].max_retries: ", "must be >= 0"},
  });
  for (auto url : {"http://127.0.0.1:8080", "http://localhost:3000/api/v3",
                   "http://localhost", "https://github.example.com/api/v3"}) {
    auto result = parse_config(app(std::string{"base_url = \""} + url + "\""), "t.toml");
    EXPECT_TRUE(result) << url << ": " << error_text(result);
  }
  auto remote = parse_config(app("backend = \"remote\"\napp_id = 9\n"
                                 "private_key_parameter = \"/ghscale/key\""),
                             "t.toml");
  EXPECT_TRUE(remote) << error_text(remote);
}

TEST(ConfigValidation, SectionValues) {
  auto section = [](const std::string& lines) {
    return minimal + lines + "\n"; // the first key is on line 15
  };
  expect_rejections({
    {section("[aws]\nregion = \"\""), "t.toml:15:1: aws.region: ", "must be set"},
    {section("[aws]\nec2_endpoint = \"ec2.local\""), "t.toml:15:1: aws.ec2_endpoint: ",
     "invalid URL 'ec2.local': no scheme"},
    {section("[aws]\nparameter_prefix = \"ghscale\""),
     "t.toml:15:1: aws.parameter_prefix: ", "must start with '/'"},
    {section("[aws]\nssm_throughput = 0"), "t.toml:15:1: aws.ssm_throughput: ",
     "must be within (0, 10000]"},
    {section("[aws]\nprofile = 3"), "t.toml:15:1: aws.profile: ", "expected a string, got an integer"},
    {section("[http]\nmax_in_flight = 0"), "t.toml:15:1: http.max_in_flight: ",
     "must be within 1..1024"},
    {section("[http]\nconnect_timeout = \"0s\""), "t.toml:15:1: http.connect_timeout: ",
     "must be > 0s"},
    {section("[http]\nca_file = \"/etc/ca.pem\""), "t.toml:15:1: ",
     "unknown key 'ca_file' in http"},
    {section("[scaler]\nwindow = \"-1s\""), "t.toml:15:1: scaler.window: ",
     "invalid duration \"-1s\""},
    {section("[scaler]\nmax_batch = 0"), "t.toml:15:1: scaler.max_batch: ", "must be >= 1"},
    {section("[retry]\nbase = \"0s\""), "t.toml:15:1: retry.base: ", "must be > 0s"},
    {section("[retry]\nbase = \"1m\"\nmax = \"30s\""), "t.toml:16:1: retry.max: ",
     "must be >= base (1m)"},
    {section("[retry]\nbase = \"1h\""), "t.toml:15:1: retry.base: ",
     "must be <= max (1m)"},
    {section("[retry]\njitter = 1.0"), "t.toml:15:1: retry.jitter: ", "must be in [0, 1)"},
    {section("[retry]\njitter = -0.1"), "t.toml:15:1: retry.jitter: ", "must be in [0, 1)"},
    {section("[supervision]\nmax_restarts = -1"),
     "t.toml:15:1: supervision.max_restarts: ", "must be >= 0"},
    {section("[supervision]\nwithin = \"0s\""), "t.toml:15:1: supervision.within: ",
     "must be > 0s"},
    {section("[supervision]\ninitial_backoff = \"0s\""),
     "t.toml:15:1: supervision.initial_backoff: ", "must be > 0s"},
    {section("[supervision]\nmax_backoff = \"50ms\""),
     "t.toml:15:1: supervision.max_backoff: ", "must be >= initial_backoff (100ms)"},
    {section("[supervision]\njitter = 1"), "t.toml:15:1: supervision.jitter: ",
     "must be in [0, 1)"},
    {section("[timeouts]\nlaunch = \"0s\""), "t.toml:15:1: timeouts.launch: ",
     "must be > 0s"},
    {section("[timeouts]\ndrain = \"0ms\""), "t.toml:15:1: timeouts.drain: ",
     "must be > 0s"},
    {section("[timeouts]\ndrain = \"20s\""), "t.toml:15:1: timeouts.drain: ",
     "must be longer than the wait_time of queue 'jobs' (20s)"},
    {section("[simulation]\nec2_fleet_burst = 0"),
     "t.toml:15:1: simulation.ec2_fleet_burst: ", "must be >= 1"},
    {section("[simulation]\nec2_fleet_refill = -1.0"),
     "t.toml:15:1: simulation.ec2_fleet_refill: ", "must be >= 0"},
    {section("[simulation]\ngithub_hourly_limit = -1"),
     "t.toml:15:1: simulation.github_hourly_limit: ", "must be >= 0"},
    {section("[simulation]\ngithub_writes_per_minute = -1"),
     "t.toml:15:1: simulation.github_writes_per_minute: ", "must be >= 0"},
    {section("[simulation]\ntoken_ttl = \"0s\""), "t.toml:15:1: simulation.token_ttl: ",
     "must be > 0s"},
    {section("[logging]\nlevel = \"verbose\""), "t.toml:15:1: logging.level: ",
     "invalid value \"verbose\""},
    {section("[logging]\nformat = \"xml\""), "t.toml:15:1: logging.format: ",
     "invalid value \"xml\" (expected logfmt or json)"},
  });
  EXPECT_TRUE(parse_config(section("[scaler]\nwindow = \"0s\""), "t.toml"));
}

// -- durations --------------------------------------------------------------------

TEST(ConfigDurations, Parse) {
  const std::pair<const char*, caf::timespan> good[] = {
    {"250ms", 250ms}, {"20s", 20s}, {"5m", 5min},       {"1h", 1h},
    {"1h30m", 90min}, {"0s", 0s},   {"90s", 90s},       {"1s500ms", 1500ms},
    {"7us", 7us},     {"3ns", 3ns}, {"1h0m5s", 3605s},  {"2562047h", 2562047h},
  };
  for (auto& [text, expected] : good) {
    caf::timespan parsed{-1};
    EXPECT_TRUE(parse_duration(text, parsed)) << text;
    EXPECT_EQ(parsed, expected) << text;
  }
  for (auto text : {"", "20", "s", "-5s", "+5s", "5 s", " 5s", "1.5h", "5x", "5S",
                    "5s1m", "1m1m", "5ms3s", "1h30", "99999999999h", "2562048h"}) {
    caf::timespan parsed{42};
    EXPECT_FALSE(parse_duration(text, parsed)) << text;
    EXPECT_EQ(parsed, caf::timespan{42}) << text;
  }
}

TEST(ConfigDurations, Format) {
  EXPECT_EQ(format_duration(caf::timespan{0}), "0s");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(20s), "20s");
  EXPECT_EQ(format_duration(120s), "2m");
  EXPECT_EQ(format_duration(90s), "1m30s");
  EXPECT_EQ(format_duration(90min), "1h30m");
  EXPECT_EQ(format_duration(1500ms), "1s500ms");
  EXPECT_EQ(format_duration(1ns), "1ns");
  EXPECT_EQ(format_duration(caf::timespan{-5s}), "-5s");
  for (caf::timespan x : {caf::timespan{3723004005006ns}, caf::timespan{15min},
                          caf::timespan{1h}, caf::timespan{999us}}) {
    caf::timespan back{-1};
    ASSERT_TRUE(parse_duration(format_duration(x), back)) << format_duration(x);
    EXPECT_EQ(back, x);
  }
}

// -- rendering -----------------------------------------------------------------------

TEST(ConfigRender, RoundTripsTheExample) {
  auto original = load_config_file(source_file("conf/ghscale.example.toml"));
  ASSERT_TRUE(original) << error_text(original);
  auto text = render_config(*original);
  auto again = parse_config(text, "rendered");
  ASSERT_TRUE(again) << error_text(again) << "\n" << text;
  EXPECT_EQ(render_config(*again), text);
  ASSERT_EQ(again->pools.size(), original->pools.size());
  EXPECT_EQ(again->pools[0].on_demand_failover, original->pools[0].on_demand_failover);
  EXPECT_EQ(again->pools[1].org_level, original->pools[1].org_level);
  EXPECT_EQ(again->pools[1].capacity, original->pools[1].capacity);
  EXPECT_EQ(again->queues[0].url, original->queues[0].url);
  EXPECT_EQ(again->github_apps[0].private_key_parameter,
            original->github_apps[0].private_key_parameter);
  EXPECT_EQ(again->retry.max, original->retry.max);
  EXPECT_DOUBLE_EQ(again->supervision.jitter, original->supervision.jitter);
  EXPECT_EQ(again->logging.format, "json");
}

TEST(ConfigRender, FillsInDefaultsAndEscapes) {
  auto cfg = parse_config(replace_line("labels = [\"x\"]",
                                       "labels = [\"quote\\\"back\\\\slash\\ttab\\u0001\"]"),
                          "t.toml");
  ASSERT_TRUE(cfg) << error_text(cfg);
  auto text = render_config(*cfg);
  EXPECT_NE(text.find("\n[[pools]]\nname = \"p\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nmax_runners = 10\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nlevel = \"org\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\ncapacity = \"spot\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nwindow = \"250ms\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nlaunch = \"2m\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\njitter = 0.2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nec2_fleet_refill = 5.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("\nsubnets = []\n"), std::string::npos) << text;
  auto again = parse_config(text, "rendered");
  ASSERT_TRUE(again) << error_text(again) << "\n" << text;
  EXPECT_EQ(again->pools[0].labels, cfg->pools[0].labels);
  EXPECT_EQ(render_config(*again), text);
}

TEST(ConfigRender, PrintsKeyReferencesButNoKeyMaterial) {
  auto cfg = parse_config(minimal + "[[github_apps]]\nname = \"g\"\nbackend = \"remote\"\n"
                                    "app_id = 5\nprivate_key_file = \"/etc/ghscale/app.pem\"\n",
                          "t.toml");
  ASSERT_TRUE(cfg) << error_text(cfg);
  auto text = render_config(*cfg);
  EXPECT_NE(text.find("private_key_file = \"/etc/ghscale/app.pem\""), std::string::npos)
    << text;
  EXPECT_EQ(text.find("BEGIN"), std::string::npos) << text;
}
