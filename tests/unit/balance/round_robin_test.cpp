#include <algorithm>

#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

using testing::AlgorithmBench;
using testing::cluster_config;
using testing::node_config;

TEST(RoundRobin, WeightsOneTwoThreeGiveNginxSequence) {
  // Verifies smooth weighted round robin with load factors 1,2,3 repeats exactly c,b,c,a,b,c.
  AlgorithmBench bench(cluster_config("round_robin", {node_config("a", 1), node_config("b", 2),
                                                      node_config("c", 3)}),
                       make_round_robin);
  EXPECT_EQ(bench.sequence(6), "cbcabc");
  EXPECT_EQ(bench.sequence(6), "cbcabc");
  EXPECT_EQ(bench.sequence(6), "cbcabc");
}

TEST(RoundRobin, FiveOneOneMatchesNginx) {
  // Verifies the sequence nginx documents for weights 5,1,1: a,a,b,a,c,a,a, then again.
  AlgorithmBench bench(cluster_config("round_robin", {node_config("a", 5), node_config("b", 1),
                                                      node_config("c", 1)}),
                       make_round_robin);
  EXPECT_EQ(bench.sequence(14), "aabacaaaabacaa");
}

TEST(RoundRobin, EqualWeightsRotateInOrder) {
  // Verifies equal load factors give plain rotation a,b,c,a,b,c.
  AlgorithmBench bench(
      cluster_config("round_robin", {node_config("a"), node_config("b"), node_config("c")}),
      make_round_robin);
  EXPECT_EQ(bench.sequence(9), "abcabcabc");
}

TEST(RoundRobin, FractionalWeightsKeepTheirRatio) {
  // Verifies load factors 0.5 and 1.5 give exactly a 1:3 split in every 4 picks (no rounding
  // drift).
  AlgorithmBench bench(
      cluster_config("round_robin", {node_config("a", 0.5), node_config("b", 1.5)}),
      make_round_robin);
  for (int round = 0; round < 100; ++round) {
    const std::string s = bench.sequence(4);
    EXPECT_EQ(std::count(s.begin(), s.end(), 'a'), 1) << s;
    EXPECT_EQ(std::count(s.begin(), s.end(), 'b'), 3) << s;
  }
}

TEST(RoundRobin, OnlyCandidatesArePicked) {
  // Verifies a node left out of the candidates is never returned and the rest still alternate.
  AlgorithmBench bench(
      cluster_config("round_robin", {node_config("a"), node_config("b"), node_config("c")}),
      make_round_robin);
  const std::vector<std::uint32_t> candidates{0, 2};
  std::string s;
  for (int i = 0; i < 6; ++i) s += bench.nodes[bench.pick(candidates)].name;
  EXPECT_EQ(s, "acacac");
}

}  // namespace
}  // namespace pb::balance
