#include "protobalance/balance/node.hpp"

#include <gtest/gtest.h>

#include "protobalance/balance/algorithm.hpp"

namespace pb::balance {
namespace {

TEST(FailureReason, NamesMatchTheMetricLabels) {
  // Verifies every failure reason has the name used as the metric's `reason` label.
  EXPECT_EQ(to_string(FailureReason::refused), "refused");
  EXPECT_EQ(to_string(FailureReason::timeout), "timeout");
  EXPECT_EQ(to_string(FailureReason::reset), "reset");
  EXPECT_EQ(to_string(FailureReason::closed), "closed");
  EXPECT_EQ(to_string(FailureReason::unreachable), "unreachable");
}

TEST(NodeRuntime, FailuresTotalSumsEveryReason) {
  // Verifies failures_total() adds up the per-reason counters and starts at zero.
  NodeRuntime rt;
  EXPECT_EQ(rt.failures_total(), 0U);
  rt.failures[static_cast<std::size_t>(FailureReason::refused)] = 2;
  rt.failures[static_cast<std::size_t>(FailureReason::timeout)] = 3;
  rt.failures[static_cast<std::size_t>(FailureReason::unreachable)] = 5;
  EXPECT_EQ(rt.failures_total(), 10U);
}

TEST(NodeRuntime, StartsUpWithoutLatencySample) {
  // Verifies a fresh runtime is up, idle and has no latency sample (-1).
  NodeRuntime rt;
  EXPECT_TRUE(rt.up());
  EXPECT_EQ(rt.active.load(), 0);
  EXPECT_EQ(rt.latency_ewma_us.load(), -1);
  rt.unavailable_since_ns = 123;
  EXPECT_FALSE(rt.up());
}

TEST(StableNameHash, IsFnv1a64) {
  // Verifies the node-name hash is FNV-1a 64 (published test vectors), so every build and every
  // process agrees on rendezvous scores.
  EXPECT_EQ(stable_name_hash(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(stable_name_hash("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(stable_name_hash("foobar"), 0x85944171f73967e8ULL);
  EXPECT_NE(stable_name_hash("alpha"), stable_name_hash("beta"));
}

TEST(AlgorithmRegistry, ListsTheSixAlgorithms) {
  // Verifies the registry knows exactly the six algorithms of the contract, each with a factory.
  const char* names[] = {"round_robin",   "random",   "least_connections",
                         "least_latency", "min_load", "hash"};
  EXPECT_EQ(algorithms().size(), std::size(names));
  for (const char* name : names) {
    const AlgorithmEntry* entry = find_algorithm(name);
    ASSERT_NE(entry, nullptr) << name;
    EXPECT_EQ(entry->name, name);
    EXPECT_NE(entry->make, nullptr) << name;
  }
  EXPECT_EQ(find_algorithm("roundrobin"), nullptr);
  EXPECT_EQ(find_algorithm(""), nullptr);
}

}  // namespace
}  // namespace pb::balance
