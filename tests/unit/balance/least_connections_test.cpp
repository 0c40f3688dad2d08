#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

using testing::AlgorithmBench;
using testing::cluster_config;
using testing::node_config;

TEST(LeastConnections, PicksFewestActive) {
  // Verifies the node with the fewest active connections wins when load factors are equal.
  AlgorithmBench bench(
      cluster_config("least_connections", {node_config("a"), node_config("b"), node_config("c")}),
      make_least_connections);
  bench.runtime(0).active = 4;
  bench.runtime(1).active = 1;
  bench.runtime(2).active = 3;
  EXPECT_EQ(bench.pick(), 1U);
  bench.runtime(1).active = 5;
  EXPECT_EQ(bench.pick(), 2U);
}

TEST(LeastConnections, DividesByLoadFactor) {
  // Verifies active / load_factor is compared: 4 connections on a factor-4 node beat 2 on a
  // factor-1 node.
  AlgorithmBench bench(
      cluster_config("least_connections",
                     {node_config("a", 4), node_config("b", 1), node_config("c", 1)}),
      make_least_connections);
  bench.runtime(0).active = 4;
  bench.runtime(1).active = 2;
  bench.runtime(2).active = 3;
  EXPECT_EQ(bench.pick(), 0U);
  bench.runtime(0).active = 9;  // 2.25 per unit
  EXPECT_EQ(bench.pick(), 1U);
}

TEST(LeastConnections, TiesRotate) {
  // Verifies equal scores are served in rotation rather than always the first node.
  AlgorithmBench bench(
      cluster_config("least_connections", {node_config("a"), node_config("b"), node_config("c")}),
      make_least_connections);
  EXPECT_EQ(bench.sequence(6), "abcabc");
}

TEST(LeastConnections, TiesRotateOnlyAmongTheLowest) {
  // Verifies rotation is among the tied lowest nodes only; a busier node is never chosen.
  AlgorithmBench bench(
      cluster_config("least_connections", {node_config("a"), node_config("b"), node_config("c")}),
      make_least_connections);
  bench.runtime(0).active = 2;
  bench.runtime(1).active = 2;
  bench.runtime(2).active = 3;
  EXPECT_EQ(bench.sequence(6), "ababab");
}

}  // namespace
}  // namespace pb::balance
