#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

using testing::AlgorithmBench;
using testing::cluster_config;
using testing::node_config;

TEST(LeastLatency, NodesWithoutSampleComeFirstInRotation) {
  // Verifies unmeasured nodes (-1) are picked before a fast measured one, rotating among them.
  AlgorithmBench bench(
      cluster_config("least_latency", {node_config("a"), node_config("b"), node_config("c")}),
      make_least_latency);
  bench.runtime(0).latency_ewma_us = 50;
  EXPECT_EQ(bench.sequence(4), "bcbc");
}

TEST(LeastLatency, PicksLowestLatencyPerLoadFactor) {
  // Verifies latency_ewma_us / load_factor decides once every node has a sample.
  AlgorithmBench bench(cluster_config("least_latency", {node_config("a", 4), node_config("b", 1),
                                                        node_config("c", 1)}),
                       make_least_latency);
  bench.runtime(0).latency_ewma_us = 10000;  // 2500 per unit
  bench.runtime(1).latency_ewma_us = 3000;
  bench.runtime(2).latency_ewma_us = 2600;
  EXPECT_EQ(bench.sequence(3), "aaa");
  bench.runtime(2).latency_ewma_us = 2000;
  EXPECT_EQ(bench.pick(), 2U);
}

TEST(LeastLatency, EqualLatenciesRotate) {
  // Verifies nodes with the same score share the picks in rotation.
  AlgorithmBench bench(
      cluster_config("least_latency", {node_config("a"), node_config("b"), node_config("c")}),
      make_least_latency);
  bench.runtime(0).latency_ewma_us = 700;
  bench.runtime(1).latency_ewma_us = 700;
  bench.runtime(2).latency_ewma_us = 900;
  EXPECT_EQ(bench.sequence(4), "abab");
}

}  // namespace
}  // namespace pb::balance
