#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithm.hpp"

namespace pb::balance {
namespace {

using testing::cluster_config;
using testing::key_from;
using testing::node_config;

config::SourcePos at(std::uint32_t line, std::uint32_t column) {
  return {line, column};
}

// A config with one cluster whose tables carry positions as a loader would set them:
// [[cluster]] on line 10, its node tables from line 20 on (one every 10 lines).
config::Config one_cluster(config::ClusterConfig cluster) {
  cluster.pos = at(10, 1);
  cluster.algorithm_pos = at(12, 13);
  for (std::size_t i = 0; i < cluster.nodes.size(); ++i) {
    const auto line = static_cast<std::uint32_t>(20 + 10 * i);
    cluster.nodes[i].pos = at(line, 1);
    cluster.nodes[i].fallover_pos = cluster.nodes[i].fallover.empty() ? at(0, 0) : at(line + 4, 12);
    cluster.nodes[i].tier_pos = at(line + 5, 8);
  }
  config::Config cfg;
  cfg.file = "/etc/protobalance/pb.toml";
  cfg.clusters.push_back(std::move(cluster));
  return cfg;
}

config::NodeConfig falls_to(std::string name, std::string fallover) {
  auto node = node_config(std::move(name));
  node.fallover = std::move(fallover);
  return node;
}

std::vector<config::Diagnostic> check(const config::Config& cfg) {
  std::vector<config::Diagnostic> errors;
  validate(cfg, errors);
  return errors;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

TEST(Validate, GoodConfigHasNoErrors) {
  // Verifies a correct cluster (chain a -> b -> c, two tiers, one draining node) passes.
  auto cluster = cluster_config("least_connections",
                                {falls_to("a", "b"), falls_to("b", "c"), node_config("c")});
  cluster.nodes[2].tier = 2;
  cluster.nodes[1].state = AdminState::draining;
  EXPECT_TRUE(check(one_cluster(cluster)).empty());
}

TEST(Validate, UnknownAlgorithmAtItsKey) {
  // Verifies an unknown algorithm is reported at algorithm_pos with the file name and the list
  // of known algorithms.
  const auto errors = check(one_cluster(cluster_config("fastest", {node_config("a")})));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].file, "/etc/protobalance/pb.toml");
  EXPECT_EQ(errors[0].pos.line, 12U);
  EXPECT_EQ(errors[0].pos.column, 13U);
  EXPECT_TRUE(contains(errors[0].message, "unknown algorithm \"fastest\"")) << errors[0].message;
  EXPECT_TRUE(contains(errors[0].message,
                       "round_robin, random, least_connections, least_latency, "
                       "min_load, hash"))
      << errors[0].message;
}

TEST(Validate, BadLoadRatingAtItsKey) {
  // Verifies a min_load expression error is reported at load_rating_pos with the character.
  auto cluster = cluster_config("min_load", {node_config("a")});
  cluster.load_rating = "connections / capacity";
  cluster.load_rating_pos = at(14, 15);
  const auto errors = check(one_cluster(cluster));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].pos.line, 14U);
  EXPECT_EQ(errors[0].pos.column, 15U);
  EXPECT_TRUE(contains(errors[0].message, "\"capacity\"")) << errors[0].message;
  EXPECT_TRUE(contains(errors[0].message, "at character 15")) << errors[0].message;
}

TEST(Validate, MissingHashKeyAtTheCluster) {
  // Verifies a hash cluster without hash_key is reported at the [[cluster]] table, and a
  // present key passes.
  auto cluster = cluster_config("hash", {node_config("a")});
  auto errors = check(one_cluster(cluster));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].pos.line, 10U);
  EXPECT_EQ(errors[0].pos.column, 1U);
  EXPECT_EQ(errors[0].message, "algorithm \"hash\" needs hash_key = \"<32 hex digits>\"");
  cluster.hash_key = key_from(0);
  EXPECT_TRUE(check(one_cluster(cluster)).empty());
}

TEST(Validate, FalloverToUnknownNodeOrItself) {
  // Verifies fallover naming a missing node or the node itself is reported at fallover_pos.
  const auto errors = check(
      one_cluster(cluster_config("round_robin", {falls_to("a", "zeta"), falls_to("b", "b")})));
  ASSERT_EQ(errors.size(), 2U);
  EXPECT_EQ(errors[0].pos.line, 24U);
  EXPECT_EQ(errors[0].pos.column, 12U);
  EXPECT_TRUE(contains(errors[0].message, "\"zeta\"")) << errors[0].message;
  EXPECT_TRUE(contains(errors[0].message, "not a node of cluster \"web\"")) << errors[0].message;
  EXPECT_EQ(errors[1].pos.line, 34U);
  EXPECT_TRUE(contains(errors[1].message, "\"b\" cannot fall over to itself")) << errors[1].message;
}

TEST(Validate, FalloverCycleReportedOnceWhereItCloses) {
  // Verifies a -> b -> a is reported once, at b's fallover (the link that closes the loop).
  const auto errors = check(one_cluster(
      cluster_config("round_robin", {falls_to("a", "b"), falls_to("b", "a"), node_config("c")})));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].pos.line, 34U);
  EXPECT_EQ(errors[0].pos.column, 12U);
  EXPECT_TRUE(contains(errors[0].message, "fall-over cycle a -> b -> a")) << errors[0].message;
}

TEST(Validate, CycleBehindATailNamesOnlyTheLoop) {
  // Verifies a chain leading into a loop (a -> b -> c -> b) reports the loop b -> c -> b at c.
  const auto errors = check(one_cluster(
      cluster_config("round_robin", {falls_to("a", "b"), falls_to("b", "c"), falls_to("c", "b")})));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].pos.line, 44U);
  EXPECT_TRUE(contains(errors[0].message, "fall-over cycle b -> c -> b")) << errors[0].message;
}

TEST(Validate, TierBelowOneAtItsKey) {
  // Verifies tier 0 is reported at tier_pos.
  auto cluster = cluster_config("round_robin", {node_config("a"), node_config("b")});
  cluster.nodes[1].tier = 0;
  const auto errors = check(one_cluster(cluster));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].pos.line, 35U);
  EXPECT_EQ(errors[0].pos.column, 8U);
  EXPECT_TRUE(contains(errors[0].message, "tier")) << errors[0].message;
}

TEST(Validate, EveryNodeOfflineAtTheCluster) {
  // Verifies a cluster whose nodes all start offline is refused at the [[cluster]] table, and
  // one draining node is enough to pass this check.
  auto cluster = cluster_config("round_robin", {node_config("a"), node_config("b")});
  cluster.nodes[0].state = AdminState::offline;
  cluster.nodes[1].state = AdminState::offline;
  const auto errors = check(one_cluster(cluster));
  ASSERT_EQ(errors.size(), 1U);
  EXPECT_EQ(errors[0].pos.line, 10U);
  EXPECT_TRUE(contains(errors[0].message, "offline")) << errors[0].message;
  cluster.nodes[1].state = AdminState::draining;
  EXPECT_TRUE(check(one_cluster(cluster)).empty());
}

TEST(Validate, ReportsEveryProblemOfEveryCluster) {
  // Verifies errors accumulate across clusters and are appended after existing ones.
  auto cfg = one_cluster(cluster_config("nope", {falls_to("a", "x")}));
  auto second = cluster_config("hash", {node_config("b")});
  second.name = "db";
  cfg.clusters.push_back(second);
  std::vector<config::Diagnostic> errors{config::Diagnostic{"earlier", {}, "kept"}};
  validate(cfg, errors);
  ASSERT_EQ(errors.size(), 4U);
  EXPECT_EQ(errors[0].message, "kept");
  EXPECT_TRUE(contains(errors[1].message, "unknown algorithm"));
  EXPECT_TRUE(contains(errors[2].message, "\"x\""));
  EXPECT_TRUE(contains(errors[3].message, "hash_key"));
}

}  // namespace
}  // namespace pb::balance
