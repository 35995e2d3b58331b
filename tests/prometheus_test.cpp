// The Prometheus text exposition: rendered from a real registry, then read
// back by a strict parser here and by the official client library's parser
// (tests/peers/prom_check.py).
#include "actors/ops/metrics.hpp"
#include "transport/prometheus.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#ifndef GHSCALE_SOURCE_DIR
#error "define GHSCALE_SOURCE_DIR (the repository root)"
#endif

namespace ghscale {
namespace {

/// What a strict reader gets out of a page: families with their HELP and
/// TYPE, and every sample keyed "name{k=v,...}" with unescaped, sorted labels.
struct exposition {
  struct family {
    std::string help;
    std::string type;
  };
  std::map<std::string, family> families;
  std::vector<std::string> family_order;
  std::map<std::string, double> samples;
};

/// Parses the text format 0.0.4 strictly: throws std::runtime_error naming
/// the line on anything a Prometheus server would reject or that breaks the
/// format's rules (HELP/TYPE once and first, contiguous families, escapes).
class strict_parser {
public:
  exposition parse(const std::string& text) {
    if (!text.empty() && text.back() != '\n')
      fail("missing final line feed");
    std::istringstream in{text};
    std::string line;
    while (std::getline(in, line)) {
      ++line_no_;
      if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0)
        meta(line);
      else if (line.empty() || line[0] == '#')
        fail("unexpected line");
      else
        sample(line);
    }
    return std::move(out_);
  }

private:
  exposition out_;
  std::string current_;
  std::set<std::string> closed_, with_samples_;
  int line_no_ = 0;

  [[noreturn]] void fail(const std::string& why) {
    throw std::runtime_error("line " + std::to_string(line_no_) + ": " + why);
  }

  static bool name_char(char c, bool first) {
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'
           || (!first && std::isdigit(static_cast<unsigned char>(c)));
  }

  std::string name_at(const std::string& s, size_t& i) {
    size_t start = i;
    while (i < s.size() && name_char(s[i], i == start))
      ++i;
    if (i == start)
      fail("expected a name");
    return s.substr(start, i - start);
  }

  void enter(const std::string& family) {
    if (family == current_)
      return;
    if (!current_.empty())
      closed_.insert(current_);
    if (closed_.count(family))
      fail("family " + family + " is not contiguous");
    current_ = family;
    out_.family_order.push_back(family);
  }

  void meta(const std::string& line) {
    size_t i = 7;
    auto name = name_at(line, i);
    if (i >= line.size() || line[i] != ' ')
      fail("expected a space after the name");
    auto rest = line.substr(i + 1);
    enter(name);
    if (with_samples_.count(name))
      fail("HELP/TYPE after samples of " + name);
    auto& f = out_.families[name];
    if (line[2] == 'H') {
      if (!f.help.empty())
        fail("second HELP for " + name);
      f.help = unescape(rest, false);
      if (f.help.empty())
        fail("empty HELP");
    } else {
      if (!f.type.empty())
        fail("second TYPE for " + name);
      if (rest != "counter" && rest != "gauge" && rest != "histogram")
        fail("unexpected type " + rest);
      f.type = rest;
    }
  }

  /// HELP escapes \\ and \n; label values also \".
  std::string unescape(const std::string& s, bool quotes) {
    std::string out;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\') {
        if (quotes && s[i] == '"')
          fail("unescaped quote");
        out += s[i];
        continue;
      }
      if (++i == s.size())
        fail("dangling backslash");
      if (s[i] == 'n')
        out += '\n';
      else if (s[i] == '\\' || (quotes && s[i] == '"'))
        out += s[i];
      else
        fail(std::string{"bad escape \\"} + s[i]);
    }
    return out;
  }

  std::string family_of(const std::string& sample_name) {
    if (out_.families.count(sample_name))
      return sample_name;
    for (std::string suffix : {"_bucket", "_sum", "_count"}) {
      if (sample_name.size() > suffix.size()
          && sample_name.compare(sample_name.size() - suffix.size(),
                                 suffix.size(), suffix)
               == 0) {
        auto base = sample_name.substr(0, sample_name.size() - suffix.size());
        auto f = out_.families.find(base);
        if (f != out_.families.end() && f->second.type == "histogram")
          return base;
      }
    }
    fail("sample " + sample_name + " without HELP and TYPE");
  }

  std::map<std::string, std::string> labels_at(const std::string& s,
                                               size_t& i) {
    std::map<std::string, std::string> labels;
    if (i >= s.size() || s[i] != '{')
      return labels;
    ++i;
    while (i < s.size() && s[i] != '}') {
      auto key = name_at(s, i);
      if (s.compare(i, 2, "=\"") != 0)
        fail("expected =\" after label " + key);
      i += 2;
      size_t start = i;
      while (i < s.size() && s[i] != '"')
        i += s[i] == '\\' ? 2 : 1;
      if (i >= s.size())
        fail("unterminated label value");
      if (!labels.emplace(key, unescape(s.substr(start, i - start), true)).second)
        fail("label " + key + " twice");
      ++i;
      if (i < s.size() && s[i] == ',')
        ++i;
    }
    if (i >= s.size())
      fail("unterminated label set");
    ++i;
    return labels;
  }

  double value_of(const std::string& text) {
    if (text == "+Inf")
      return INFINITY;
    if (text == "-Inf")
      return -INFINITY;
    if (text == "NaN")
      return NAN;
    char* end = nullptr;
    double x = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || std::isinf(x) || std::isnan(x))
      fail("bad value '" + text + "'");
    return x;
  }

  void sample(const std::string& line) {
    size_t i = 0;
    auto name = name_at(line, i);
    auto family = family_of(name);
    if (family != current_)
      fail("sample of " + family + " outside its family");
    auto& f = out_.families[family];
    if (f.help.empty() || f.type.empty())
      fail("sample before HELP and TYPE of " + family);
    if (f.type == "counter" && family.size() < 6)
      fail("counter " + family + " is not named *_total");
    auto labels = labels_at(line, i);
    if (i >= line.size() || line[i] != ' ')
      fail("expected a space before the value");
    auto value = value_of(line.substr(i + 1));
    std::string key = name + "{";
    for (auto& [k, v] : labels)
      key += k + "=" + v + ",";
    key += "}";
    if (!out_.samples.emplace(key, value).second)
      fail("duplicate sample " + key);
    with_samples_.insert(family);
  }
};

exposition parse_strictly(const std::string& text) {
  return strict_parser{}.parse(text);
}

/// A registry with one of each kind, awkward label values and names whose
/// registry keys would interleave if rendered in key order.
metrics_ptr sample_registry() {
  auto m = std::make_shared<metrics>();
  m->add("ghscale_webhook_deliveries_total", {{"outcome", "accepted"}}, 3);
  m->add("ghscale_webhook_deliveries_total", {{"outcome", "bad_signature"}});
  m->add("ghscale_jobs_total", {{"pool", "linux"}, {"outcome", "launched"}}, 5);
  m->add("ghscale_jobs_total", {}, 1);
  m->add("ghscale_jobs_total_extra_total", {}, 2); // sorts between the two
  m->add("ghscale_odd_counter", {{"q", "a\"b\\c\nd"}}, 7);
  m->set("ghscale_runners", {{"pool", "linux"}, {"state", "ready"}}, 4);
  m->set("ghscale_github_rate_remaining", {{"app", "ci"}}, 4999.5);
  m->observe("ghscale_webhook_seconds", {}, 0.003);
  m->observe("ghscale_webhook_seconds", {}, 0.2);
  m->observe("ghscale_webhook_seconds", {}, 4000);
  m->observe("ghscale_launch_seconds", {{"pool", "linux"}}, 42);
  return m;
}

TEST(PrometheusTest, EmptyRegistryRendersAnEmptyPage) {
  metrics m;
  EXPECT_EQ(render_prometheus(m.snapshot()), "");
}

TEST(PrometheusTest, RendersEverySeriesAndParsesBack) {
  auto text = render_prometheus(sample_registry()->snapshot());
  auto page = parse_strictly(text);
  auto& s = page.samples;
  EXPECT_EQ(s.at("ghscale_webhook_deliveries_total{outcome=accepted,}"), 3);
  EXPECT_EQ(s.at("ghscale_webhook_deliveries_total{outcome=bad_signature,}"), 1);
  EXPECT_EQ(s.at("ghscale_jobs_total{outcome=launched,pool=linux,}"), 5);
  EXPECT_EQ(s.at("ghscale_jobs_total{}"), 1);
  EXPECT_EQ(s.at("ghscale_jobs_total_extra_total{}"), 2);
  EXPECT_EQ(s.at("ghscale_runners{pool=linux,state=ready,}"), 4);
  EXPECT_EQ(s.at("ghscale_github_rate_remaining{app=ci,}"), 4999.5);
  EXPECT_EQ(s.size(), 8u + 2 * (17 + 1 + 2)); // two histograms of 17 bounds
  EXPECT_EQ(page.families.at("ghscale_runners").type, "gauge");
  EXPECT_EQ(page.families.at("ghscale_webhook_seconds").type, "histogram");
  EXPECT_EQ(page.families.at("ghscale_jobs_total").type, "counter");
}

TEST(PrometheusTest, MemberGaugesShowTheirMinimumOrSumNeverTheMembers) {
  metrics m;
  using agg = metrics::aggregate;
  m.set_member("ghscale_github_rate_remaining", {{"app", "ci"}}, "7", 4000, agg::min);
  m.set_member("ghscale_github_rate_remaining", {{"app", "ci"}}, "8", 120, agg::min);
  m.set_member("ghscale_github_queue_depth", {{"app", "ci"}}, "7", 3, agg::sum);
  m.set_member("ghscale_github_queue_depth", {{"app", "ci"}}, "8", 4, agg::sum);
  EXPECT_EQ(m.gauge("ghscale_github_rate_remaining", {{"app", "ci"}}), 120);
  EXPECT_EQ(m.gauge("ghscale_github_queue_depth", {{"app", "ci"}}), 7);
  m.set_member("ghscale_github_rate_remaining", {{"app", "ci"}}, "8", 4999, agg::min);
  EXPECT_EQ(m.gauge("ghscale_github_rate_remaining", {{"app", "ci"}}), 4000);
  m.drop_member("ghscale_github_queue_depth", {{"app", "ci"}}, "7");
  EXPECT_EQ(m.gauge("ghscale_github_queue_depth", {{"app", "ci"}}), 4);
  // A thousand members are still one series.
  for (int i = 0; i < 1000; ++i)
    m.set_member("ghscale_github_queue_depth", {{"app", "ci"}}, "i" + std::to_string(i), 1,
                 agg::sum);
  auto page = parse_strictly(render_prometheus(m.snapshot()));
  EXPECT_EQ(page.samples.size(), 2u);
  EXPECT_EQ(page.samples.at("ghscale_github_queue_depth{app=ci,}"), 1000 + 4); // and member "8"
  for (int i = 0; i < 1000; ++i)
    m.drop_member("ghscale_github_queue_depth", {{"app", "ci"}}, "i" + std::to_string(i));
  m.drop_member("ghscale_github_queue_depth", {{"app", "ci"}}, "8");
  EXPECT_EQ(parse_strictly(render_prometheus(m.snapshot())).samples.size(), 1u) << "gone with its last member";
}

TEST(PrometheusTest, CounterFamiliesAlwaysEndInTotal) {
  auto page = parse_strictly(render_prometheus(sample_registry()->snapshot()));
  ASSERT_TRUE(page.families.count("ghscale_odd_counter_total"));
  EXPECT_EQ(page.families.at("ghscale_odd_counter_total").type, "counter");
  EXPECT_FALSE(page.families.count("ghscale_odd_counter"));
}

TEST(PrometheusTest, LabelValuesAreEscapedAndRoundTrip) {
  auto text = render_prometheus(sample_registry()->snapshot());
  EXPECT_NE(text.find(R"(ghscale_odd_counter_total{q="a\"b\\c\nd"} 7)"),
            std::string::npos);
  auto page = parse_strictly(text);
  EXPECT_EQ(page.samples.at("ghscale_odd_counter_total{q=a\"b\\c\nd,}"), 7);
}

TEST(PrometheusTest, FamiliesAreSortedAndEachHasHelpAndType) {
  auto page = parse_strictly(render_prometheus(sample_registry()->snapshot()));
  std::vector<std::string> expected = {"ghscale_github_rate_remaining",
                                       "ghscale_jobs_total",
                                       "ghscale_jobs_total_extra_total",
                                       "ghscale_launch_seconds",
                                       "ghscale_odd_counter_total",
                                       "ghscale_runners",
                                       "ghscale_webhook_deliveries_total",
                                       "ghscale_webhook_seconds"};
  EXPECT_EQ(page.family_order, expected);
  EXPECT_EQ(page.families.at("ghscale_runners").help,
            "Runners by pool and lifecycle state.");
  EXPECT_EQ(page.families.at("ghscale_odd_counter_total").help,
            "ghscale metric ghscale_odd_counter_total.");
}

TEST(PrometheusTest, HistogramBucketsAreCumulativeUpToInf) {
  auto page = parse_strictly(render_prometheus(sample_registry()->snapshot()));
  auto& s = page.samples;
  auto bucket = [&](const std::string& le) {
    return s.at("ghscale_webhook_seconds_bucket{le=" + le + ",}");
  };
  EXPECT_EQ(bucket("0.001"), 0);
  EXPECT_EQ(bucket("0.005"), 1);
  EXPECT_EQ(bucket("0.25"), 2);
  EXPECT_EQ(bucket("1800"), 2);
  EXPECT_EQ(bucket("+Inf"), 3);
  EXPECT_EQ(s.at("ghscale_webhook_seconds_count{}"), 3);
  EXPECT_DOUBLE_EQ(s.at("ghscale_webhook_seconds_sum{}"), 4000.203);
  EXPECT_EQ(s.at("ghscale_launch_seconds_bucket{le=+Inf,pool=linux,}"), 1);
  EXPECT_EQ(s.at("ghscale_launch_seconds_bucket{le=30,pool=linux,}"), 0);
  EXPECT_EQ(s.at("ghscale_launch_seconds_bucket{le=60,pool=linux,}"), 1);
}

TEST(PrometheusTest, StrictParserRejectsBrokenPages) {
  auto bad = [](const std::string& text) {
    EXPECT_THROW(parse_strictly(text), std::runtime_error) << text;
  };
  bad("x 1\n");                                            // no HELP/TYPE
  bad("# HELP x h\n# TYPE x gauge\nx{a=\"b} 1\n");         // unterminated
  bad("# HELP x h\n# TYPE x gauge\nx{a=\"\\q\"} 1\n");     // bad escape
  bad("# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\n"
      "x{a=\"1\"} 2\n");                                   // not contiguous
  bad("# HELP x h\n# TYPE x gauge\nx 1\nx 2\n");           // duplicate
  bad("# HELP x h\n# TYPE x gauge\nx one\n");              // bad value
}

/// Runs tests/peers/prom_check.py on `text`; the exit status and output.
std::pair<int, std::string> prom_check(const std::string& text) {
  char path[] = "/tmp/prom_check_XXXXXX";
  int fd = ::mkstemp(path);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()),
            static_cast<ssize_t>(text.size()));
  ::close(fd);
  auto cmd = std::string{"/usr/bin/python3 "} + GHSCALE_SOURCE_DIR
             + "/tests/peers/prom_check.py " + path + " 2>&1";
  std::string output;
  FILE* pipe = ::popen(cmd.c_str(), "r");
  char buf[512];
  while (size_t n = std::fread(buf, 1, sizeof(buf), pipe))
    output.append(buf, n);
  int status = ::pclose(pipe);
  std::remove(path);
  return {WEXITSTATUS(status), output};
}

bool python_has_prometheus_client() {
  return std::system("/usr/bin/python3 -c 'import prometheus_client' "
                     ">/dev/null 2>&1")
         == 0;
}

TEST(PrometheusTest, OfficialParserAcceptsThePage) {
  if (!python_has_prometheus_client())
    GTEST_SKIP() << "/usr/bin/python3 lacks prometheus_client "
                    "(apt-get install python3-prometheus-client)";
  auto [status, output] = prom_check(render_prometheus(sample_registry()->snapshot()));
  EXPECT_EQ(status, 0) << output;
  EXPECT_EQ(output, "ok: 8 families, 48 samples\n");
}

TEST(PrometheusTest, OfficialCheckerCatchesABrokenPage) {
  if (!python_has_prometheus_client())
    GTEST_SKIP() << "/usr/bin/python3 lacks prometheus_client "
                    "(apt-get install python3-prometheus-client)";
  auto [status, output] = prom_check("# HELP x_total h\n# TYPE x_total counter\n"
                                     "x_total 1\n# HELP y h\n# TYPE y gauge\n"
                                     "y 1\nx_total{a=\"1\"} 2\n");
  EXPECT_EQ(status, 1) << output;
}

} // namespace
} // namespace ghscale
