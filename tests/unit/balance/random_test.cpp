#include <cmath>

#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

using testing::AlgorithmBench;
using testing::cluster_config;
using testing::node_config;

config::ClusterConfig one_two_three() {
  return cluster_config("random", {node_config("a", 1), node_config("b", 2), node_config("c", 3)});
}

TEST(WeightedRandom, SharesFollowLoadFactors) {
  // Verifies 60,000 draws with load factors 1:2:3 give each node its share within 3 percent.
  AlgorithmBench bench(one_two_three(), make_random, 20240601);
  std::array<int, 3> counts{};
  constexpr int kDraws = 60000;
  for (int i = 0; i < kDraws; ++i) ++counts[bench.pick()];
  const std::array<double, 3> expected{kDraws / 6.0, 2 * kDraws / 6.0, 3 * kDraws / 6.0};
  for (std::size_t i = 0; i < counts.size(); ++i) {
    EXPECT_NEAR(counts[i], expected[i], 0.03 * expected[i]) << bench.nodes[i].name;
  }
}

TEST(WeightedRandom, SeedDeterminesTheSequence) {
  // Verifies the injected seed makes draws reproducible and another seed changes them.
  AlgorithmBench first(one_two_three(), make_random, 7);
  AlgorithmBench again(one_two_three(), make_random, 7);
  AlgorithmBench other(one_two_three(), make_random, 8);
  const std::string s = first.sequence(64);
  EXPECT_EQ(s, again.sequence(64));
  EXPECT_NE(s, other.sequence(64));
}

TEST(WeightedRandom, OnlyCandidatesArePicked) {
  // Verifies draws are restricted to the candidates and cover all of them.
  AlgorithmBench bench(one_two_three(), make_random, 1);
  const std::vector<std::uint32_t> candidates{0, 1};
  std::array<int, 3> counts{};
  for (int i = 0; i < 3000; ++i) ++counts[bench.pick(candidates)];
  EXPECT_EQ(counts[2], 0);
  EXPECT_GT(counts[0], 800);   // expected 1000
  EXPECT_GT(counts[1], 1800);  // expected 2000
}

}  // namespace
}  // namespace pb::balance
