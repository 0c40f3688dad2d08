// [cluster.health], [cluster.agent] and slow_start (issue 12): defaults, values and errors at
// FILE:LINE:COL.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "load_test_support.hpp"

namespace pb::config::test {
namespace {

using namespace std::chrono_literals;

// One cluster "c" with one node; `tables` follow the [[cluster]] keys (line 3 onwards).
std::string cluster_with(const std::string& tables) {
  return "[[cluster]]\nname = \"c\"\n" + tables +
         "\n[[cluster.node]]\nname = \"n\"\naddress = \"127.0.0.1:1\"\n";
}

TEST(HealthConfig, AbsentTablesMeanPlainProbesNoAgentNoSlowStart) {
  // Verifies the defaults when none of the keys is written.
  const LoadResult result = load(cluster_with(""));
  ASSERT_TRUE(result.config) << describe(result);
  const auto& cluster = result.config->clusters.front();
  EXPECT_FALSE(cluster.health.has_value());
  EXPECT_FALSE(cluster.agent.has_value());
  EXPECT_EQ(cluster.slow_start, 0ms);
}

TEST(HealthConfig, ReadsEveryKey) {
  // Verifies every key of the two tables and slow_start, escapes in send and hex bytes.
  const LoadResult result = load(cluster_with(
      "slow_start = \"30s\"\n[cluster.health]\ninterval = \"3s\"\ntimeout = \"1s\"\nrise = 4\n"
      "fall = 5\nsend = \"PING\\r\\n\"\nexpect_hex = \"2b504f4E47\"\nport = 8081\n"
      "[cluster.agent]\nport = 9777\ninterval = \"2s\"\ntimeout = \"500ms\"\n"));
  ASSERT_TRUE(result.config) << describe(result);
  const auto& cluster = result.config->clusters.front();
  EXPECT_EQ(cluster.slow_start, 30s);
  ASSERT_TRUE(cluster.health.has_value());
  EXPECT_EQ(cluster.health->interval, 3s);
  EXPECT_EQ(cluster.health->timeout, std::optional<Duration>(1s));
  EXPECT_EQ(cluster.health->rise, 4U);
  EXPECT_EQ(cluster.health->fall, 5U);
  EXPECT_EQ(cluster.health->send, "PING\r\n");
  EXPECT_EQ(cluster.health->expect, "+PONG");
  EXPECT_EQ(cluster.health->port, 8081);
  ASSERT_TRUE(cluster.agent.has_value());
  EXPECT_EQ(cluster.agent->port, 9777);
  EXPECT_EQ(cluster.agent->interval, 2s);
  EXPECT_EQ(cluster.agent->timeout, 500ms);
}

TEST(HealthConfig, DefaultsOfAnEmptyHealthTable) {
  // Verifies the documented defaults: 2s, timeout unset (connect_timeout), rise 2, fall 3.
  const LoadResult result = load(cluster_with("[cluster.health]\n"));
  ASSERT_TRUE(result.config) << describe(result);
  const auto& health = *result.config->clusters.front().health;
  EXPECT_EQ(health.interval, 2s);
  EXPECT_FALSE(health.timeout.has_value());
  EXPECT_EQ(health.rise, 2U);
  EXPECT_EQ(health.fall, 3U);
  EXPECT_EQ(health.send, "");
  EXPECT_EQ(health.expect, "");
}

TEST(HealthConfig, ErrorsPointAtTheKey) {
  // Verifies each refusal and where it points: timeout longer than interval, send with
  // send_hex, bad hex, rise 0, unknown key, agent without port, agent port 0, bad slow_start.
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.health]\ninterval = \"1s\"\ntimeout = \"2s\"\n")),
                           5, 11, "timeout (2s) must not be longer than interval (1s)"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.health]\nsend = \"a\"\nsend_hex = \"61\"\n")),
                           5, 12, "send_hex and send exclude each other"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.health]\nexpect_hex = \"6g\"\n")), 4, 14,
                           "'g' at offset 1 is not a hex digit"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.health]\nexpect_hex = \"616\"\n")), 4, 14,
                           "even, non-zero number of hex digits"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.health]\nrise = 0\n")), 4, 8,
                           "rise must be from 1 to 1000, got 0"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.health]\nintervall = \"1s\"\n")), 4, 1,
                           "unknown key 'intervall' in [cluster.health]"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.agent]\ninterval = \"1s\"\n")), 3, 1,
                           "[cluster.agent] is missing required key 'port'"));
  EXPECT_TRUE(single_error(load(cluster_with("[cluster.agent]\nport = 0\n")), 4, 8,
                           "port must be from 1 to 65535, got 0"));
  EXPECT_TRUE(single_error(load(cluster_with("slow_start = \"soon\"\n")), 3, 14,
                           "slow_start has an invalid duration 'soon'"));
  EXPECT_TRUE(single_error(load(cluster_with("health = 3\n")), 3, 10,
                           "health must be a table, written [cluster.health], got integer"));
}

}  // namespace
}  // namespace pb::config::test
