#pragma once

// Builders shared by the balance tests: configuration structs written by hand (no file, no
// loader) and a bench that drives one Algorithm over plain nodes.

#include <array>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/balance/node.hpp"
#include "protobalance/config/config.hpp"

namespace pb::balance::testing {

inline config::NodeConfig node_config(std::string name, double load_factor = 1.0) {
  config::NodeConfig node;
  node.address = "127.0.0.1:0";
  node.name = std::move(name);
  node.load_factor = load_factor;
  return node;
}

inline config::ClusterConfig cluster_config(std::string algorithm,
                                            std::vector<config::NodeConfig> nodes) {
  config::ClusterConfig cluster;
  cluster.name = "web";
  cluster.algorithm = std::move(algorithm);
  cluster.nodes = std::move(nodes);
  return cluster;
}

inline std::array<std::uint8_t, 16> key_from(std::uint8_t first) {
  std::array<std::uint8_t, 16> key{};
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(first + i);
  return key;
}

inline boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

// The n-th of many distinct IPv4 clients (10.x.y.z).
inline boost::asio::ip::address client_v4(std::uint32_t n) {
  return boost::asio::ip::address_v4(0x0a000000U + n);
}

// One algorithm instance over the nodes of a cluster config, each with a fresh NodeRuntime, the
// way Cluster would set them up, but without eligibility rules in between.
struct AlgorithmBench {
  AlgorithmBench(config::ClusterConfig cfg,
                 std::unique_ptr<Algorithm> (*make)(const AlgorithmParams&),
                 std::uint64_t seed = 42)
      : cluster(std::move(cfg)) {
    for (const auto& nc : cluster.nodes) {
      Node node;
      node.name = nc.name;
      node.load_factor = nc.load_factor;
      node.name_hash = stable_name_hash(nc.name);
      node.runtime = std::make_shared<NodeRuntime>();
      nodes.push_back(std::move(node));
    }
    all.resize(nodes.size());
    std::iota(all.begin(), all.end(), 0U);
    algorithm = make(AlgorithmParams{cluster, seed});
  }

  std::uint32_t pick(const std::vector<std::uint32_t>& candidates,
                     const boost::asio::ip::address& client = ip("192.0.2.1")) {
    return algorithm->pick(PickInput{nodes, candidates, client});
  }
  std::uint32_t pick() { return pick(all); }

  // Names of the next `count` picks over all nodes, concatenated ("cbcabc").
  std::string sequence(std::size_t count) {
    std::string out;
    for (std::size_t i = 0; i < count; ++i) out += nodes[pick()].name;
    return out;
  }

  NodeRuntime& runtime(std::size_t node) { return *nodes[node].runtime; }

  config::ClusterConfig cluster;
  std::vector<Node> nodes;
  std::vector<std::uint32_t> all;
  std::unique_ptr<Algorithm> algorithm;
};

}  // namespace pb::balance::testing
