#include <gtest/gtest.h>

#include "load_test_support.hpp"

namespace pb::config {
namespace {

using namespace std::chrono_literals;
using test::describe;
using test::error_at;
using test::load;
using test::single_error;

constexpr std::string_view kCluster = R"([[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
[[cluster]]
name = "api"
[[cluster.node]]
name = "a"
address = "127.0.0.1:2"
)";

LoadResult load_listener(std::string_view listener_keys) {
  return load(std::string(kCluster) + "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\n"
                                      "cluster = \"c\"\n" +
              std::string(listener_keys));
}

TEST(GuardConfig, AListenerWithoutGuardsIsUnguarded) {
  // Verifies the defaults: no access list, no limit, no validation, no SNI route.
  const auto result = load_listener("");
  ASSERT_NE(result.config, nullptr) << describe(result);
  const auto& l = result.config->listeners.at(0);
  EXPECT_FALSE(l.guarded());
  EXPECT_TRUE(l.allow.empty());
  EXPECT_EQ(l.max_client_connections, 0U);
  EXPECT_TRUE(l.max_client_rate.text.empty());
  EXPECT_FALSE(l.validate.has_value());
  EXPECT_TRUE(l.routes.empty());
}

TEST(GuardConfig, EveryGuardKeyIsRead) {
  // Verifies that allow, deny, the limits, [listener.validate] and [[listener.route]] are read
  // with their values and the positions later checks point at.
  const auto result = load_listener(R"(allow = ["192.0.2.0/24", "2001:db8::/32"]
deny = ["192.0.2.66"]
max_client_connections = 10
max_client_rate = "20/1s"
[listener.validate]
timeout = "2s"
max_bytes = 64
expect = '^(GET|POST) /'
[[listener.route]]
sni = ["api.example.com", "*.api.example.com"]
cluster = "api"
[[listener.route]]
sni = ["*"]
cluster = "c"
)");
  ASSERT_NE(result.config, nullptr) << describe(result);
  const auto& l = result.config->listeners.at(0);
  EXPECT_TRUE(l.guarded());
  ASSERT_EQ(l.allow.size(), 2U);
  EXPECT_EQ(l.allow[1].text, "2001:db8::/32");
  EXPECT_EQ(l.allow[1].pos.line, 15U);
  ASSERT_EQ(l.deny.size(), 1U);
  EXPECT_EQ(l.max_client_connections, 10U);
  EXPECT_EQ(l.max_client_rate.text, "20/1s");
  ASSERT_TRUE(l.validate.has_value());
  EXPECT_EQ(l.validate->timeout, 2s);
  EXPECT_EQ(l.validate->max_bytes, 64U);
  EXPECT_EQ(l.validate->expect.text, "^(GET|POST) /");
  ASSERT_EQ(l.routes.size(), 2U);
  EXPECT_EQ(l.routes[0].cluster, "api");
  ASSERT_EQ(l.routes[0].sni.size(), 2U);
  EXPECT_EQ(l.routes[0].sni[1].text, "*.api.example.com");
  EXPECT_EQ(l.routes[1].sni.at(0).text, "*");
}

TEST(GuardConfig, ValidateNeedsAnExpressionAndBoundedBytes) {
  // Verifies that [listener.validate] without expect, with max_bytes 0 or above 16 KiB, or with
  // a zero timeout is refused, every problem reported.
  const auto result = load_listener(R"([listener.validate]
timeout = "0s"
max_bytes = 16385
)");
  ASSERT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 3U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 15, 1, "missing required key 'expect'"));
  EXPECT_TRUE(error_at(result, 1, 16, 11, "timeout must be greater than 0s"));
  EXPECT_TRUE(error_at(result, 2, 17, 13, "max_bytes must be from 1 to 16384"));
  EXPECT_TRUE(single_error(load_listener("[listener.validate]\nexpect = 'x'\nmax_bytes = 0\n"), 17,
                           13, "max_bytes must be from 1 to 16384"));
}

TEST(GuardConfig, RoutesNeedAKnownClusterAndServerNames) {
  // Verifies that a route to an undefined cluster, without sni, with an empty sni list or with
  // an unknown key is refused with its position.
  EXPECT_TRUE(single_error(load_listener("[[listener.route]]\nsni = [\"a.example\"]\ncluster = \"nope\"\n"),
                           17, 11, "cluster 'nope' is not defined"));
  EXPECT_TRUE(single_error(load_listener("[[listener.route]]\ncluster = \"api\"\n"), 15, 1,
                           "missing required key 'sni'"));
  EXPECT_TRUE(single_error(load_listener("[[listener.route]]\nsni = []\ncluster = \"api\"\n"), 16,
                           7, "at least one"));
  EXPECT_TRUE(single_error(
      load_listener("[[listener.route]]\nsni = [\"a\"]\ncluster = \"api\"\nport = 1\n"), 18, 1,
      "unknown key 'port' in [[listener.route]]"));
}

TEST(GuardConfig, WrongTypesAreReported) {
  // Verifies the type checks of the guard keys: every wrong one reported.
  const auto result = load_listener(R"(allow = "10.0.0.0/8"
deny = [1]
max_client_connections = -1
max_client_rate = 20
validate = 3
)");
  ASSERT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 5U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 15, 9, "allow must be an array of strings"));
  EXPECT_TRUE(error_at(result, 1, 16, 9, "deny entries must be strings"));
  EXPECT_TRUE(error_at(result, 2, 17, 26, "max_client_connections must be from 0"));
  EXPECT_TRUE(error_at(result, 3, 18, 19, "max_client_rate must be a string"));
  EXPECT_TRUE(error_at(result, 4, 19, 12, "validate must be a table"));
}

}  // namespace
}  // namespace pb::config
