#include "protobalance/balance/cluster.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "balance_fixtures.hpp"

namespace pb::balance {
namespace {

using namespace std::chrono_literals;
using testing::cluster_config;
using testing::ip;
using testing::node_config;

const auto kClient = ip("192.0.2.10");

config::NodeConfig with_fallover(config::NodeConfig node, std::string fallover) {
  node.fallover = std::move(fallover);
  return node;
}

config::NodeConfig with_tier(config::NodeConfig node, std::uint32_t tier) {
  node.tier = tier;
  return node;
}

config::NodeConfig with_max(config::NodeConfig node, std::uint32_t max_connections) {
  node.max_connections = max_connections;
  return node;
}

config::NodeConfig with_state(config::NodeConfig node, AdminState state) {
  node.state = state;
  return node;
}

// Chooses for one new client connection and returns the node's name ("" when none); the slot
// stays taken, as for a connection that is being relayed.
std::string take(Cluster& cluster, std::int32_t preferred = -1) {
  TriedSet tried(cluster.nodes().size());
  const std::int32_t node = cluster.choose(0, kClient, tried, preferred);
  return node < 0 ? "" : cluster.nodes()[static_cast<std::size_t>(node)].name;
}

// Same, giving the slot back at once.
std::string pick(Cluster& cluster, std::int32_t preferred = -1) {
  TriedSet tried(cluster.nodes().size());
  const std::int32_t node = cluster.choose(0, kClient, tried, preferred);
  if (node < 0) return "";
  cluster.release(static_cast<std::uint32_t>(node));
  return cluster.nodes()[static_cast<std::size_t>(node)].name;
}

std::string picks(Cluster& cluster, int count) {
  std::string out;
  for (int i = 0; i < count; ++i) out += pick(cluster);
  return out;
}

NodeRuntime& rt(Cluster& cluster, std::string_view name) {
  const std::int32_t index = cluster.find(name);
  EXPECT_GE(index, 0) << name;
  return *cluster.nodes()[static_cast<std::size_t>(index)].runtime;
}

std::uint32_t index(const Cluster& cluster, std::string_view name) {
  return static_cast<std::uint32_t>(cluster.find(name));
}

TEST(Cluster, BuildsNodesFromConfig) {
  // Verifies nodes keep config order and settings, fall-over names become indexes, and names
  // get their stable hash.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin",
                                 {with_fallover(node_config("a", 2), "c"),
                                  with_max(node_config("b"), 7), with_tier(node_config("c"), 2)}),
                  registry, 2, 1);
  ASSERT_EQ(cluster.nodes().size(), 3U);
  EXPECT_EQ(cluster.name(), "web");
  EXPECT_EQ(cluster.find("b"), 1);
  EXPECT_EQ(cluster.find("zz"), -1);
  EXPECT_EQ(cluster.nodes()[0].fallover, 2);
  EXPECT_EQ(cluster.nodes()[1].fallover, -1);
  EXPECT_EQ(cluster.nodes()[0].load_factor, 2.0);
  EXPECT_EQ(cluster.nodes()[1].max_connections, 7U);
  EXPECT_EQ(cluster.nodes()[2].tier, 2U);
  EXPECT_EQ(cluster.nodes()[0].name_hash, stable_name_hash("a"));
}

TEST(Cluster, EligibleNeedsAvailableUpAndRoom) {
  // Verifies eligibility: available and up and below max_connections; each condition alone
  // makes a node ineligible.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {with_max(node_config("a"), 2), node_config("b"),
                                                 node_config("c"), node_config("d")}),
                  registry, 1, 1);
  for (std::uint32_t i = 0; i < 4; ++i) EXPECT_TRUE(cluster.eligible(i)) << i;
  rt(cluster, "a").active = 2;
  EXPECT_FALSE(cluster.eligible(0));
  rt(cluster, "a").active = 1;
  EXPECT_TRUE(cluster.eligible(0));
  rt(cluster, "b").admin_state = AdminState::draining;
  EXPECT_FALSE(cluster.eligible(1));
  rt(cluster, "c").admin_state = AdminState::offline;
  EXPECT_FALSE(cluster.eligible(2));
  cluster.on_failed(3, FailureReason::refused);
  EXPECT_FALSE(cluster.eligible(3));
  rt(cluster, "d").active = 1000;  // no limit configured
  cluster.on_probe(3, true);
  EXPECT_TRUE(cluster.eligible(3));
}

TEST(Cluster, ChooseTakesASlotAndReleaseGivesItBack) {
  // Verifies choose() counts the connection as active on the chosen node and release() undoes it.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b")}), registry, 1,
                  1);
  EXPECT_EQ(take(cluster), "a");
  EXPECT_EQ(take(cluster), "b");
  EXPECT_EQ(take(cluster), "a");
  EXPECT_EQ(rt(cluster, "a").active.load(), 2);
  EXPECT_EQ(rt(cluster, "b").active.load(), 1);
  cluster.release(0);
  cluster.release(0);
  cluster.release(1);
  EXPECT_EQ(rt(cluster, "a").active.load(), 0);
  EXPECT_EQ(rt(cluster, "b").active.load(), 0);
}

TEST(Cluster, FalloverChainSkipsUnavailableNodes) {
  // Verifies with a -> b -> c and a, b unavailable, a client preferring a lands on c, and the
  // algorithm's picks of a and b go to c too (d only gets its own share).
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {with_fallover(node_config("a"), "b"),
                                                 with_fallover(node_config("b"), "c"),
                                                 node_config("c"), node_config("d")}),
                  registry, 1, 1);
  cluster.on_failed(index(cluster, "a"), FailureReason::timeout);
  cluster.on_failed(index(cluster, "b"), FailureReason::refused);
  EXPECT_EQ(pick(cluster, cluster.find("a")), "c");
  EXPECT_EQ(pick(cluster, cluster.find("b")), "c");
  EXPECT_EQ(picks(cluster, 8), "cccdcccd");
}

TEST(Cluster, RetryAfterAFailedConnectFollowsTheFailedNodesChain) {
  // Verifies that when the node just tried is passed back as preferred (its connect failed),
  // the next choice is its fall-over node c, although the algorithm, weighted 100:1 for b,
  // would pick b.
  NodeRegistry registry;
  config::NodeConfig heavy = node_config("b");
  heavy.load_factor = 100;
  Cluster cluster(cluster_config("round_robin", {with_fallover(node_config("a"), "c"), heavy,
                                                 node_config("c")}),
                  registry, 1, 1);
  TriedSet tried(cluster.nodes().size());
  const std::int32_t a = cluster.choose(0, kClient, tried, cluster.find("a"));
  ASSERT_EQ(a, cluster.find("a"));
  cluster.on_failed(static_cast<std::uint32_t>(a), FailureReason::refused);
  cluster.release(static_cast<std::uint32_t>(a));
  const std::int32_t retry = cluster.choose(0, kClient, tried, a);
  EXPECT_EQ(retry, cluster.find("c"));
  // Without the hint the algorithm decides: b.
  TriedSet fresh(cluster.nodes().size());
  EXPECT_EQ(cluster.choose(0, kClient, fresh), cluster.find("b"));
}

TEST(Cluster, PreferredNodeIsTakenWhenEligible) {
  // Verifies an eligible affinity node is chosen whatever the algorithm would pick.
  NodeRegistry registry;
  Cluster cluster(
      cluster_config("round_robin", {node_config("a"), node_config("b"), node_config("c")}),
      registry, 1, 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(pick(cluster, cluster.find("b")), "b");
}

TEST(Cluster, DrainingNodeSendsAffineClientsToItsFallover) {
  // Verifies a draining node takes no new connection: its affine clients go to its fall-over
  // node, and without a fall-over to the others.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {with_fallover(node_config("a"), "c"),
                                                 node_config("b"), node_config("c")}),
                  registry, 1, 1);
  rt(cluster, "a").admin_state = AdminState::draining;
  EXPECT_EQ(pick(cluster, cluster.find("a")), "c");
  rt(cluster, "c").admin_state = AdminState::draining;
  EXPECT_EQ(pick(cluster, cluster.find("a")), "b");
  const std::string s = picks(cluster, 30);
  EXPECT_EQ(s, std::string(30, 'b'));
}

TEST(Cluster, OfflineNodeIsNeverChosen) {
  // Verifies an offline node gets no connection, neither by algorithm nor as preferred node.
  NodeRegistry registry;
  Cluster cluster(cluster_config("random", {node_config("a"), node_config("b"), node_config("c")}),
                  registry, 1, 1);
  rt(cluster, "b").admin_state = AdminState::offline;
  std::map<std::string, int> counts;
  for (int i = 0; i < 300; ++i) ++counts[pick(cluster)];
  EXPECT_EQ(counts.count("b"), 0U);
  EXPECT_GT(counts["a"], 100);
  EXPECT_GT(counts["c"], 100);
  EXPECT_NE(pick(cluster, cluster.find("b")), "b");
}

TEST(Cluster, FullNodeOverflowsToFalloverAndBack) {
  // Verifies a node at max_connections overflows to its fall-over node and takes connections
  // again once one is released.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {with_fallover(with_max(node_config("a"), 2), "b"),
                                                 with_tier(node_config("b"), 2)}),
                  registry, 1, 1);
  EXPECT_EQ(take(cluster), "a");
  EXPECT_EQ(take(cluster), "a");
  EXPECT_EQ(take(cluster), "b");
  EXPECT_EQ(take(cluster, cluster.find("a")), "b");
  EXPECT_EQ(rt(cluster, "a").active.load(), 2);
  cluster.release(index(cluster, "a"));
  EXPECT_EQ(take(cluster), "a");
  EXPECT_EQ(rt(cluster, "a").active.load(), 2);
  EXPECT_EQ(rt(cluster, "b").active.load(), 2);
}

TEST(Cluster, FullNodeWithoutFalloverSharesAmongItsTier) {
  // Verifies that when the picked node is full and has no fall-over, another eligible node of
  // the same tier is chosen rather than the next tier.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {with_max(node_config("a"), 1), node_config("b"),
                                                 with_tier(node_config("c"), 2)}),
                  registry, 1, 1);
  EXPECT_EQ(take(cluster), "a");
  EXPECT_EQ(take(cluster), "b");
  EXPECT_EQ(take(cluster), "b");
  EXPECT_EQ(take(cluster), "b");
  EXPECT_EQ(rt(cluster, "c").active.load(), 0);
}

TEST(Cluster, SecondTierOnlyWhenFirstHasNoEligibleNode) {
  // Verifies tier 2 takes connections only while no tier 1 node is eligible, and hands them
  // back when one returns.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b"),
                                                 with_tier(node_config("c"), 2)}),
                  registry, 1, 1);
  EXPECT_EQ(picks(cluster, 6), "ababab");
  cluster.on_failed(index(cluster, "a"), FailureReason::reset);
  EXPECT_EQ(picks(cluster, 3), "bbb");
  rt(cluster, "b").admin_state = AdminState::draining;
  EXPECT_EQ(picks(cluster, 3), "ccc");
  cluster.on_probe(index(cluster, "a"), true);
  EXPECT_EQ(picks(cluster, 3), "aaa");
}

TEST(Cluster, EachNodeIsTriedOncePerConnection) {
  // Verifies one TriedSet yields every node once and then -1, as a session retrying after
  // connect failures would see.
  NodeRegistry registry;
  Cluster cluster(cluster_config("least_connections", {node_config("a"), node_config("b"),
                                                       with_tier(node_config("c"), 2)}),
                  registry, 1, 1);
  TriedSet tried(cluster.nodes().size());
  std::vector<int> seen(3, 0);
  for (int attempt = 0; attempt < 3; ++attempt) {
    const std::int32_t node = cluster.choose(0, kClient, tried);
    ASSERT_GE(node, 0) << attempt;
    ++seen[static_cast<std::size_t>(node)];
    EXPECT_TRUE(tried.contains(static_cast<std::uint32_t>(node)));
    cluster.release(static_cast<std::uint32_t>(node));
  }
  EXPECT_EQ(seen, (std::vector<int>{1, 1, 1}));
  EXPECT_EQ(cluster.choose(0, kClient, tried), -1);
}

TEST(Cluster, NoNodeWhenEvenTheLastResortsAreTried) {
  // Verifies choose() returns -1 and takes no slot once every node not offline was tried, the
  // unavailable ones included (last resort), and never offers an offline node.
  NodeRegistry registry;
  Cluster cluster(
      cluster_config("round_robin", {with_fallover(node_config("a"), "b"), node_config("b"),
                                     with_state(node_config("c"), AdminState::offline)}),
      registry, 1, 1);
  cluster.on_failed(0, FailureReason::refused);
  cluster.on_failed(1, FailureReason::unreachable);
  TriedSet tried(cluster.nodes().size());
  const std::int32_t first = cluster.choose(0, kClient, tried);
  const std::int32_t second = cluster.choose(0, kClient, tried);
  EXPECT_EQ(first, 0);  // failed first, so tried first
  EXPECT_EQ(second, 1);
  EXPECT_EQ(cluster.choose(0, kClient, tried), -1);
  cluster.release(0);
  cluster.release(1);
  for (const auto& node : cluster.nodes()) EXPECT_EQ(node.runtime->active.load(), 0);
}

TEST(Cluster, LastResortTriesLeastRecentlyFailedFirstAndSuccessBringsItBack) {
  // Verifies that with no eligible node the unavailable ones are offered, least recently failed
  // first, and that a successful connect to one makes it eligible again at once.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b")}), registry,
                  1, 1);
  cluster.on_failed(index(cluster, "b"), FailureReason::refused);
  cluster.on_failed(index(cluster, "a"), FailureReason::timeout);
  rt(cluster, "b").last_failure_ns = 10;  // b failed long before a
  rt(cluster, "a").last_failure_ns = 20;
  EXPECT_EQ(pick(cluster), "b");
  cluster.on_failed(index(cluster, "b"), FailureReason::refused);  // now b failed most recently
  EXPECT_EQ(pick(cluster), "a");
  TriedSet tried(2);
  const std::int32_t node = cluster.choose(0, kClient, tried);
  ASSERT_EQ(node, static_cast<std::int32_t>(index(cluster, "a")));
  cluster.on_connected(static_cast<std::uint32_t>(node), 1ms);
  cluster.release(static_cast<std::uint32_t>(node));
  EXPECT_TRUE(rt(cluster, "a").up());
  EXPECT_EQ(picks(cluster, 3), "aaa");  // eligible again; b stays out while a can serve
}

TEST(Cluster, LastResortSkipsNodesDownByChecksDrainingOrAgentDown) {
  // Verifies a node out by its checks, by the operator (draining) or by its agent is never a
  // last resort; only a failed connect is.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin",
                            {node_config("a"), node_config("b"), node_config("c"), node_config("d")});
  cfg.health = config::HealthConfig{};
  Cluster cluster(cfg, registry, 1, 1);
  for (std::uint32_t i = 0; i < 4; ++i) cluster.on_failed(i, FailureReason::refused);
  rt(cluster, "a").check_down = true;
  rt(cluster, "b").admin_state = AdminState::draining;
  rt(cluster, "c").agent_down = true;
  EXPECT_EQ(picks(cluster, 2), "dd");
  rt(cluster, "d").agent_state = AdminState::draining;
  EXPECT_EQ(pick(cluster), "");
}

TEST(Cluster, DueProbeDoesNotMakeNodeEligible) {
  // Verifies an unavailable node stays out of client traffic even when its probe is overdue;
  // only a successful probe (or connection) brings it back.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b")}), registry, 1,
                  1);
  cluster.on_failed(0, FailureReason::timeout);
  rt(cluster, "a").next_probe_ns = 1;  // long overdue
  EXPECT_EQ(picks(cluster, 4), "bbbb");
  cluster.on_probe(0, false);
  EXPECT_FALSE(rt(cluster, "a").up());
  cluster.on_probe(0, true);
  EXPECT_TRUE(rt(cluster, "a").up());
  EXPECT_NE(picks(cluster, 4).find('a'), std::string::npos);
}

TEST(Cluster, FailureAndProbeBookkeeping) {
  // Verifies on_failed counts the reason, sets unavailable_since once and schedules the probe
  // retry_interval ahead; a failed probe reschedules without changing since.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin", {node_config("a")});
  cfg.retry_interval = 5s;
  Cluster cluster(cfg, registry, 1, 1);
  NodeRuntime& a = rt(cluster, "a");
  const auto now = [] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
        .count();
  };
  const std::int64_t before = now();
  cluster.on_failed(0, FailureReason::refused);
  cluster.on_failed(0, FailureReason::refused);
  cluster.on_failed(0, FailureReason::closed);
  const std::int64_t after = now();
  EXPECT_EQ(a.failures[static_cast<std::size_t>(FailureReason::refused)].load(), 2U);
  EXPECT_EQ(a.failures[static_cast<std::size_t>(FailureReason::closed)].load(), 1U);
  EXPECT_EQ(a.failures_total(), 3U);
  const std::int64_t since = a.unavailable_since_ns.load();
  EXPECT_GE(since, before);
  EXPECT_LE(since, after);
  EXPECT_GE(a.next_probe_ns.load(), since + std::int64_t{5'000'000'000});
  EXPECT_LE(a.next_probe_ns.load(), after + std::int64_t{5'000'000'000});

  a.next_probe_ns = 0;
  cluster.on_probe(0, false);
  EXPECT_GE(a.next_probe_ns.load(), after + std::int64_t{5'000'000'000});
  EXPECT_EQ(a.unavailable_since_ns.load(), since);
}

TEST(Cluster, ConnectedRecordsTotalLatencyAndUp) {
  // Verifies on_connected counts the connection, seeds the latency EWMA with the first sample,
  // then moves it a fifth of the way to each new one, and marks the node up.
  NodeRegistry registry;
  Cluster cluster(cluster_config("least_latency", {node_config("a")}), registry, 1, 1);
  NodeRuntime& a = rt(cluster, "a");
  cluster.on_failed(0, FailureReason::timeout);
  cluster.on_connected(0, 10ms);
  EXPECT_TRUE(a.up());
  EXPECT_EQ(a.total.load(), 1U);
  EXPECT_EQ(a.latency_ewma_us.load(), 10000);
  cluster.on_connected(0, 20ms);
  EXPECT_EQ(a.latency_ewma_us.load(), 12000);
  cluster.on_connected(0, 2000us);
  EXPECT_EQ(a.latency_ewma_us.load(), 10000);
  EXPECT_EQ(a.total.load(), 3U);
}

TEST(Cluster, RegistryKeepsRuntimeAcrossRebuild) {
  // Verifies a Cluster rebuilt from a reloaded config shares the runtime of same-named nodes,
  // including an admin state set at run time, while a new node starts from its config.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin", {node_config("a"), node_config("b")});
  auto first = std::make_unique<Cluster>(cfg, registry, 1, 1);
  EXPECT_EQ(take(*first), "a");
  rt(*first, "b").admin_state = AdminState::draining;
  const auto a_runtime = first->nodes()[0].runtime;

  cfg.nodes.push_back(with_state(node_config("c"), AdminState::draining));
  first.reset();
  Cluster second(cfg, registry, 4, 2);
  EXPECT_EQ(second.nodes()[0].runtime, a_runtime);
  EXPECT_EQ(rt(second, "a").active.load(), 1);
  EXPECT_EQ(rt(second, "b").admin_state.load(), AdminState::draining);
  EXPECT_EQ(rt(second, "c").admin_state.load(), AdminState::draining);
}

TEST(NodeRegistry, RetainDropsRemovedNodes) {
  // Verifies retain() forgets nodes absent from the new config, so a node re-added later starts
  // from its configured state, while kept nodes keep theirs.
  NodeRegistry registry;
  auto a = registry.get("web", "a", AdminState::available);
  auto b = registry.get("web", "b", AdminState::available);
  b->admin_state = AdminState::offline;
  a->admin_state = AdminState::draining;
  EXPECT_EQ(registry.get("web", "a", AdminState::offline), a);

  config::Config cfg;
  cfg.clusters.push_back(cluster_config("round_robin", {node_config("a")}));
  registry.retain(cfg);
  EXPECT_EQ(registry.get("web", "a", AdminState::available), a);
  const auto b_again = registry.get("web", "b", AdminState::available);
  EXPECT_NE(b_again, b);
  EXPECT_EQ(b_again->admin_state.load(), AdminState::available);
  EXPECT_NE(registry.get("other", "a", AdminState::available), a);
}

TEST(Cluster, ConcurrentWorkersNeverExceedMaxConnections) {
  // Verifies workers racing for a node with max_connections 5 get exactly 5 slots between them
  // and the rest overflow to the fall-over node.
  NodeRegistry registry;
  constexpr unsigned kWorkers = 4;
  Cluster cluster(cluster_config("round_robin", {with_fallover(with_max(node_config("a"), 5), "b"),
                                                 with_tier(node_config("b"), 2)}),
                  registry, kWorkers, 1);
  std::atomic<int> on_a{0};
  std::atomic<int> on_b{0};
  std::atomic<std::int64_t> peak{0};
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 200; ++i) {
        TriedSet tried(2);
        const std::int32_t node = cluster.choose(w, kClient, tried, 0);
        if (node == 0) {
          ++on_a;
          const auto now_active = cluster.nodes()[0].runtime->active.load();
          std::int64_t seen = peak.load();
          while (now_active > seen && !peak.compare_exchange_weak(seen, now_active)) {
          }
        } else if (node == 1) {
          ++on_b;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(on_a.load(), 5);
  EXPECT_EQ(on_b.load(), 4 * 200 - 5);
  EXPECT_LE(peak.load(), 5);
  EXPECT_EQ(cluster.nodes()[0].runtime->active.load(), 5);
}

TEST(Cluster, RoundRobinIsOneSequenceAcrossWorkers) {
  // Verifies that picks from different workers continue one round robin: alternating workers
  // over three equal nodes still give a, b, c, a, b, c (per-worker state gave a, a, b, b, ...).
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b"),
                                                 node_config("c")}),
                  registry, 4, 1);
  std::string seen;
  for (unsigned i = 0; i < 9; ++i) {
    TriedSet tried(3);
    const std::int32_t node = cluster.choose(i % 4, kClient, tried);
    ASSERT_GE(node, 0);
    cluster.release(static_cast<std::uint32_t>(node));
    seen += cluster.nodes()[static_cast<std::size_t>(node)].name;
  }
  EXPECT_EQ(seen, "abcabcabc");
}

TEST(Cluster, ConcurrentWorkersShareExactRoundRobinShares) {
  // Verifies that 4 threads picking at once from one cluster give each of 4 equal nodes exactly
  // a quarter of the picks, and weighted nodes exactly their weight's share.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b", 2.0),
                                                 node_config("c"), node_config("d")}),
                  registry, 4, 1);
  std::array<std::atomic<int>, 4> counts{};
  std::vector<std::thread> threads;
  for (unsigned w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 500; ++i) {
        TriedSet tried(4);
        const std::int32_t node = cluster.choose(w, kClient, tried);
        if (node < 0) continue;
        cluster.release(static_cast<std::uint32_t>(node));
        ++counts[static_cast<std::size_t>(node)];
      }
    });
  }
  for (auto& t : threads) t.join();
  // 2000 picks over weights 1+2+1+1 = 5: 400 rounds of five.
  EXPECT_EQ(counts[0].load(), 400);
  EXPECT_EQ(counts[1].load(), 800);
  EXPECT_EQ(counts[2].load(), 400);
  EXPECT_EQ(counts[3].load(), 400);
}

TEST(Cluster, ChecksTakeFallFailuresToGoDownAndRisePassesToComeBack) {
  // Verifies rise/fall counting: fall-1 failures keep the node in, the fall-th takes it out,
  // a pass in between restarts the count, and rise passes bring it back.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin", {node_config("a"), node_config("b")});
  cfg.health = config::HealthConfig{};
  cfg.health->rise = 2;
  cfg.health->fall = 3;
  Cluster cluster(cfg, registry, 1, 1);
  const auto a = index(cluster, "a");
  cluster.on_check(a, CheckResult::mismatch, "-ERR");
  cluster.on_check(a, CheckResult::mismatch, "-ERR");
  cluster.on_check(a, CheckResult::ok, "");
  cluster.on_check(a, CheckResult::timeout, "");
  cluster.on_check(a, CheckResult::timeout, "");
  EXPECT_TRUE(cluster.eligible(a));
  cluster.on_check(a, CheckResult::refused, "");
  EXPECT_FALSE(cluster.eligible(a));
  EXPECT_TRUE(rt(cluster, "a").check_down.load());
  EXPECT_EQ(rt(cluster, "a").check_failures[static_cast<std::size_t>(CheckResult::mismatch)], 2U);
  EXPECT_EQ(rt(cluster, "a").check_failures[static_cast<std::size_t>(CheckResult::timeout)], 2U);
  EXPECT_EQ(picks(cluster, 3), "bbb");
  cluster.on_check(a, CheckResult::ok, "");
  EXPECT_FALSE(cluster.eligible(a));
  cluster.on_check(a, CheckResult::ok, "");
  EXPECT_TRUE(cluster.eligible(a));
  EXPECT_NE(picks(cluster, 4).find('a'), std::string::npos);
}

TEST(Cluster, ChecksBringBackANodeDownByAFailedConnectAfterRisePasses) {
  // Verifies that with checks a node marked unavailable by a client connect needs `rise` passes
  // counted after the failure, not earlier ones.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin", {node_config("a"), node_config("b")});
  cfg.health = config::HealthConfig{};
  cfg.health->rise = 2;
  Cluster cluster(cfg, registry, 1, 1);
  const auto a = index(cluster, "a");
  for (int i = 0; i < 5; ++i) cluster.on_check(a, CheckResult::ok, "");
  cluster.on_failed(a, FailureReason::refused);
  cluster.on_check(a, CheckResult::ok, "");
  EXPECT_FALSE(rt(cluster, "a").up());
  cluster.on_check(a, CheckResult::ok, "");
  EXPECT_TRUE(rt(cluster, "a").up());
}

TEST(Cluster, EffectiveLoadFactorAppliesAgentPercentAndSlowStartRamp) {
  // Verifies the load factor the algorithms see: configured x agent percent, ramped linearly
  // from 10% to 100% over slow_start after the node became eligible again; 0 = full weight.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin", {node_config("a", 2.0), node_config("b")});
  cfg.slow_start = std::chrono::seconds(10);
  Cluster cluster(cfg, registry, 1, 1);
  EXPECT_DOUBLE_EQ(cluster.effective_load_factor(0, 1'000'000'000), 2.0);  // present at start
  rt(cluster, "a").agent_weight_percent = 50;
  EXPECT_DOUBLE_EQ(cluster.effective_load_factor(0, 1'000'000'000), 1.0);
  rt(cluster, "b").eligible_since_ns = 1'000'000'000;
  EXPECT_NEAR(cluster.effective_load_factor(1, 1'000'000'000), 0.1, 1e-9);
  EXPECT_NEAR(cluster.effective_load_factor(1, 6'000'000'000), 0.55, 1e-9);
  EXPECT_NEAR(cluster.effective_load_factor(1, 11'000'000'000), 1.0, 1e-9);
  EXPECT_NEAR(cluster.effective_load_factor(1, 50'000'000'000), 1.0, 1e-9);
}

TEST(Cluster, SlowStartNodeGetsASmallShareAtFirst) {
  // Verifies that a node just back (mark_up via a probe) takes far less than its equal share
  // at first under round robin, while slow start runs.
  NodeRegistry registry;
  auto cfg = cluster_config("round_robin", {node_config("a"), node_config("b")});
  cfg.slow_start = std::chrono::hours(1);  // the ramp hardly moves during the test
  Cluster cluster(cfg, registry, 1, 1);
  cluster.on_failed(0, FailureReason::refused);
  cluster.on_probe(0, true);
  const std::string seen = picks(cluster, 110);
  const auto on_a = std::count(seen.begin(), seen.end(), 'a');
  EXPECT_GE(on_a, 8);   // about 1 in 11 (0.1 : 1)
  EXPECT_LE(on_a, 12);
}

TEST(Cluster, AgentStateIsTheMoreRestrictiveWithTheOperators) {
  // Verifies that the agent's drain/maint and the operator's state combine to the more
  // restrictive one, and agent down keeps the node out.
  NodeRegistry registry;
  Cluster cluster(cluster_config("round_robin", {node_config("a"), node_config("b")}), registry,
                  1, 1);
  auto& a = rt(cluster, "a");
  a.agent_state = AdminState::draining;
  EXPECT_EQ(a.effective_state(), AdminState::draining);
  EXPECT_EQ(picks(cluster, 2), "bb");
  a.agent_state = AdminState::available;
  a.admin_state = AdminState::offline;
  EXPECT_EQ(a.effective_state(), AdminState::offline);
  a.admin_state = AdminState::available;
  a.agent_down = true;
  EXPECT_EQ(picks(cluster, 2), "bb");
  a.agent_down = false;
  EXPECT_NE(picks(cluster, 2).find('a'), std::string::npos);
}

TEST(TriedSet, TracksSmallAndLargeClusters) {
  // Verifies membership for indexes in the inline words and beyond 256 nodes.
  TriedSet small(4);
  EXPECT_FALSE(small.contains(3));
  small.insert(3);
  EXPECT_TRUE(small.contains(3));
  EXPECT_FALSE(small.contains(2));

  TriedSet large(1000);
  for (std::uint32_t i : {0U, 63U, 64U, 255U, 256U, 999U}) {
    EXPECT_FALSE(large.contains(i)) << i;
    large.insert(i);
    EXPECT_TRUE(large.contains(i)) << i;
  }
  EXPECT_FALSE(large.contains(500));
  EXPECT_FALSE(large.contains(5000));
}

TEST(Cluster, UnknownAlgorithmIsRefused) {
  // Verifies a Cluster cannot be built with an algorithm the registry does not know.
  NodeRegistry registry;
  EXPECT_THROW(Cluster(cluster_config("fastest", {node_config("a")}), registry, 1, 1),
               std::invalid_argument);
}

}  // namespace
}  // namespace pb::balance
