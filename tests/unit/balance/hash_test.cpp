#include <map>
#include <stdexcept>
#include <string>

#include <gtest/gtest.h>

#include "balance_fixtures.hpp"
#include "protobalance/balance/algorithms.hpp"
#include "protobalance/balance/cluster.hpp"

namespace pb::balance {
namespace {

using testing::client_v4;
using testing::cluster_config;
using testing::ip;
using testing::key_from;
using testing::node_config;

config::ClusterConfig hashed(std::vector<config::NodeConfig> nodes, std::uint8_t key = 0) {
  auto cluster = cluster_config("hash", std::move(nodes));
  cluster.hash_key = key_from(key);
  return cluster;
}

std::vector<config::NodeConfig> four_nodes() {
  return {node_config("a"), node_config("b"), node_config("c"), node_config("d")};
}

// The name of the node a cluster chooses for one client (giving the slot back at once).
std::string node_for(Cluster& cluster, const boost::asio::ip::address& client) {
  TriedSet tried(cluster.nodes().size());
  const std::int32_t node = cluster.choose(0, client, tried);
  if (node < 0) return "";
  cluster.release(static_cast<std::uint32_t>(node));
  return cluster.nodes()[static_cast<std::size_t>(node)].name;
}

TEST(Hash, ClientStaysOnItsNode) {
  // Verifies the same client gets the same node on every pick, and clients spread over nodes.
  NodeRegistry registry;
  Cluster cluster(hashed(four_nodes()), registry, 1, 1);
  const auto client = ip("198.51.100.7");
  const std::string first = node_for(cluster, client);
  ASSERT_FALSE(first.empty());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(node_for(cluster, client), first);
  std::map<std::string, int> seen;
  for (std::uint32_t c = 0; c < 200; ++c) ++seen[node_for(cluster, client_v4(c))];
  EXPECT_EQ(seen.size(), 4U);
}

TEST(Hash, IndependentClustersWithSameKeyAgree) {
  // Verifies two balancers (separate Cluster, registry and seed) with the same key and node
  // names, even listed in another order, send every client to the same node.
  NodeRegistry registry_one;
  NodeRegistry registry_two;
  Cluster one(hashed(four_nodes()), registry_one, 2, 1);
  Cluster two(hashed({node_config("d"), node_config("b"), node_config("a"), node_config("c")}),
              registry_two, 3, 999);
  for (std::uint32_t c = 0; c < 1000; ++c) {
    ASSERT_EQ(node_for(one, client_v4(c)), node_for(two, client_v4(c))) << c;
  }
}

TEST(Hash, AnotherKeyGivesAnotherMapping) {
  // Verifies a different hash_key remaps most clients (about 3 in 4 with four nodes).
  NodeRegistry registry;
  Cluster one(hashed(four_nodes(), 0), registry, 1, 1);
  Cluster two(hashed(four_nodes(), 100), registry, 1, 1);
  int moved = 0;
  for (std::uint32_t c = 0; c < 1000; ++c) {
    if (node_for(one, client_v4(c)) != node_for(two, client_v4(c))) ++moved;
  }
  EXPECT_GT(moved, 650);
  EXPECT_LT(moved, 850);
}

TEST(Hash, RemovingANodeMovesOnlyItsClients) {
  // Verifies that after removing node c, exactly the clients that were on c change node.
  NodeRegistry registry;
  Cluster before(hashed(four_nodes()), registry, 1, 1);
  Cluster after(hashed({node_config("a"), node_config("b"), node_config("d")}), registry, 1, 1);
  int on_removed = 0;
  for (std::uint32_t c = 0; c < 1000; ++c) {
    const std::string old_node = node_for(before, client_v4(c));
    const std::string new_node = node_for(after, client_v4(c));
    if (old_node == "c") {
      ++on_removed;
      EXPECT_NE(new_node, "c");
    } else {
      EXPECT_EQ(new_node, old_node) << c;
    }
  }
  EXPECT_GT(on_removed, 150);  // about 250: the test did move clients
}

TEST(Hash, LoadFactorsSetTheShares) {
  // Verifies weighted rendezvous gives a load_factor 3 node about three quarters of clients.
  NodeRegistry registry;
  Cluster cluster(hashed({node_config("a", 1), node_config("b", 3)}), registry, 1, 1);
  int on_b = 0;
  constexpr int kClients = 10000;
  for (std::uint32_t c = 0; c < kClients; ++c) {
    if (node_for(cluster, client_v4(c)) == "b") ++on_b;
  }
  EXPECT_NEAR(on_b, 0.75 * kClients, 0.03 * kClients);
}

TEST(Hash, Ipv6HashesBySlash64AndMappedV4AsV4) {
  // Verifies addresses in one IPv6 /64 share a node, different /64s spread, and an IPv4-mapped
  // address goes where the plain IPv4 address goes.
  NodeRegistry registry;
  Cluster cluster(hashed(four_nodes()), registry, 1, 1);
  const std::string node = node_for(cluster, ip("2001:db8:1:2::1"));
  EXPECT_EQ(node_for(cluster, ip("2001:db8:1:2:ffff:eeee:dddd:cccc")), node);
  EXPECT_EQ(node_for(cluster, ip("2001:db8:1:2:1234::99")), node);

  std::map<std::string, int> seen;
  for (int net = 0; net < 64; ++net) {
    const std::string text = "2001:db8:" + std::to_string(net) + "::1";
    ++seen[node_for(cluster, ip(text.c_str()))];
  }
  EXPECT_EQ(seen.size(), 4U);

  for (std::uint32_t c = 0; c < 100; ++c) {
    const auto v4 = client_v4(c).to_v4();
    const auto mapped = boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, v4);
    EXPECT_EQ(node_for(cluster, mapped), node_for(cluster, v4)) << v4.to_string();
  }
}

TEST(Hash, MissingKeyIsAValidationError) {
  // Verifies a hash cluster without hash_key is reported with the expected syntax, and a key
  // makes it valid.
  auto cluster = cluster_config("hash", {node_config("a")});
  EXPECT_EQ(validate_hash(cluster), "algorithm \"hash\" needs hash_key = \"<32 hex digits>\"");
  EXPECT_THROW(make_hash(AlgorithmParams{cluster, 1}), std::invalid_argument);
  cluster.hash_key = key_from(1);
  EXPECT_EQ(validate_hash(cluster), "");
}

}  // namespace
}  // namespace pb::balance
