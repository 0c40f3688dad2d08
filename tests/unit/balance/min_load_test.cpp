#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

using testing::AlgorithmBench;
using testing::cluster_config;
using testing::node_config;

config::ClusterConfig min_load(std::string expression, std::vector<config::NodeConfig> nodes) {
  auto cluster = cluster_config("min_load", std::move(nodes));
  cluster.load_rating = std::move(expression);
  return cluster;
}

void add_failures(NodeRuntime& rt, std::uint64_t count) {
  rt.failures[static_cast<std::size_t>(FailureReason::refused)] += count;
}

TEST(MinLoad, CustomExpressionDecides) {
  // Verifies "connections * 2 + failures" is evaluated per node and the lowest value wins.
  AlgorithmBench bench(min_load("connections * 2 + failures",
                                {node_config("a"), node_config("b"), node_config("c")}),
                       make_min_load);
  bench.runtime(0).active = 1;
  add_failures(bench.runtime(0), 3);  // 5
  bench.runtime(1).active = 2;        // 4
  bench.runtime(2).active = 3;        // 6
  EXPECT_EQ(bench.pick(), 1U);
  add_failures(bench.runtime(1), 2);  // 6
  EXPECT_EQ(bench.pick(), 0U);
}

TEST(MinLoad, DefaultExpressionUsesLoadFactor) {
  // Verifies the default "connections / load_factor" weighs nodes by their load factor.
  config::ClusterConfig cluster =
      cluster_config("min_load", {node_config("a", 4), node_config("b", 1)});
  ASSERT_EQ(cluster.load_rating, "connections / load_factor");
  AlgorithmBench bench(cluster, make_min_load);
  bench.runtime(0).active = 4;  // 1.0
  bench.runtime(1).active = 2;  // 2.0
  EXPECT_EQ(bench.pick(), 0U);
  bench.runtime(0).active = 12;  // 3.0
  EXPECT_EQ(bench.pick(), 1U);
}

TEST(MinLoad, LatencyAndTotalVariablesAreBound) {
  // Verifies latency_ms (EWMA in ms, 0 without sample) and total reach the expression.
  AlgorithmBench bench(min_load("latency_ms + total", {node_config("a"), node_config("b")}),
                       make_min_load);
  bench.runtime(0).latency_ewma_us = 2000;  // 2 ms
  bench.runtime(0).total = 5;               // 7
  bench.runtime(1).total = 8;               // no sample: 0 + 8
  EXPECT_EQ(bench.pick(), 0U);
  bench.runtime(0).latency_ewma_us = 4000;  // 9
  EXPECT_EQ(bench.pick(), 1U);
}

TEST(MinLoad, TiesRotate) {
  // Verifies nodes rating the same are served in rotation.
  AlgorithmBench bench(min_load("failures", {node_config("a"), node_config("b"), node_config("c")}),
                       make_min_load);
  add_failures(bench.runtime(1), 1);
  EXPECT_EQ(bench.sequence(4), "acac");
}

TEST(MinLoad, UnknownVariableIsRejectedWithPosition) {
  // Verifies an unknown name is reported with muparser's text, its 1-based character position
  // and the list of variables.
  const std::string message = validate_min_load(min_load("connections * weight", {}));
  EXPECT_NE(message.find("\"connections * weight\""), std::string::npos) << message;
  EXPECT_NE(message.find("Unexpected token \"weight\""), std::string::npos) << message;
  EXPECT_NE(message.find("at character 15"), std::string::npos) << message;
  EXPECT_NE(message.find("latency_ms"), std::string::npos) << message;
}

TEST(MinLoad, SyntaxErrorsAreRejectedWithPosition) {
  // Verifies truncated and malformed expressions are refused and say where.
  const std::string truncated = validate_min_load(min_load("connections /", {}));
  EXPECT_NE(truncated.find("Unexpected end of expression at the end of the expression"),
            std::string::npos)
      << truncated;
  const std::string doubled = validate_min_load(min_load("connections * * 2", {}));
  EXPECT_NE(doubled.find("at character 15"), std::string::npos) << doubled;
  EXPECT_NE(validate_min_load(min_load("", {})).find("Expression is empty"), std::string::npos);
  EXPECT_NE(validate_min_load(min_load("1, connections", {})).find("comma-separated"),
            std::string::npos);
}

TEST(MinLoad, ValidExpressionsPass) {
  // Verifies every documented variable and ordinary functions are accepted.
  EXPECT_EQ(validate_min_load(min_load("connections / load_factor", {})), "");
  EXPECT_EQ(validate_min_load(
                min_load("max(connections, 1) * 2 + failures + total / 1000 + latency_ms", {})),
            "");
}

TEST(MinLoad, FactoryRefusesAnInvalidExpression) {
  // Verifies building the algorithm from an unvalidated bad expression throws, not misbehaves.
  const auto cluster = min_load("connections +", {node_config("a")});
  EXPECT_THROW(make_min_load(AlgorithmParams{cluster, 1}), std::invalid_argument);
}

}  // namespace
}  // namespace pb::balance

namespace pb::balance {
namespace {

void report(NodeRuntime& rt, std::vector<AgentValue> values, std::int64_t at_ns) {
  std::lock_guard lock(rt.agent_mutex);
  rt.agent_values = std::move(values);
  rt.agent_values_ns = at_ns;
}

std::int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             Clock::now().time_since_epoch())
      .count();
}

config::ClusterConfig with_agent(config::ClusterConfig cluster) {
  cluster.agent = config::AgentConfig{};
  cluster.agent->port = 9777;
  cluster.agent->interval = std::chrono::seconds(5);
  return cluster;
}

TEST(MinLoadAgent, UnknownVariablesAreAgentValuesOnlyWithAnAgent) {
  // Verifies that validation accepts names beyond the built-in variables only when the cluster
  // has [cluster.agent], and that the message without it says so.
  const auto plain = testing::cluster_config("min_load", {testing::node_config("a")});
  auto cluster = plain;
  cluster.load_rating = "cpu * 100 + connections / load_factor";
  const std::string error = validate_min_load(cluster);
  EXPECT_NE(error.find("cpu"), std::string::npos) << error;
  EXPECT_NE(error.find("[cluster.agent]"), std::string::npos) << error;
  EXPECT_EQ(validate_min_load(with_agent(cluster)), "");
}

TEST(MinLoadAgent, LowestReportedLoadWinsAndUnreportedNodesComeLast) {
  // Verifies that agent values feed the expression, the node reporting the lowest load wins,
  // a node without the value rates after every node with it, and stale values (older than
  // three agent intervals) count as unreported.
  auto cluster = with_agent(testing::cluster_config(
      "min_load", {testing::node_config("a"), testing::node_config("b"), testing::node_config("c")}));
  cluster.load_rating = "cpu * 100 + connections / load_factor";
  testing::AlgorithmBench bench(cluster, make_min_load);
  const std::int64_t now = steady_now_ns();
  report(bench.runtime(0), {{"cpu", 0.9}}, now);
  report(bench.runtime(1), {{"cpu", 0.2}, {"mem", 5.0}}, now);
  // c has not reported: it comes after a and b even though they have connections.
  bench.runtime(0).active = 3;
  bench.runtime(1).active = 3;
  EXPECT_EQ(bench.pick(), 1U);
  report(bench.runtime(1), {{"cpu", 0.95}}, now);
  EXPECT_EQ(bench.pick(), 0U);
  // a's report is 16 s old: beyond 3 x 5 s, so only b counts as reporting.
  report(bench.runtime(0), {{"cpu", 0.1}}, now - 16'000'000'000);
  EXPECT_EQ(bench.pick(), 1U);
  // Nobody reports: ties rotate among all.
  report(bench.runtime(1), {}, now);
  std::set<std::uint32_t> seen;
  for (int i = 0; i < 3; ++i) seen.insert(bench.pick());
  EXPECT_EQ(seen.size(), 3U);
}

}  // namespace
}  // namespace pb::balance
