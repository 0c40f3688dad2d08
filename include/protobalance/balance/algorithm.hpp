#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "protobalance/balance/node.hpp"
#include "protobalance/config/config.hpp"

namespace pb::balance {

// What an algorithm is given for one pick.
struct PickInput {
  std::span<const Node> nodes;                  // all nodes of the cluster
  std::span<const std::uint32_t> candidates;    // indexes into nodes; non-empty, ascending
  const boost::asio::ip::address& client;       // the client's address
  // Effective load factor per node (configured x agent percent x slow-start ramp), indexed like
  // nodes; empty = the configured ones.
  std::span<const double> load_factors = {};

  double load_factor(std::uint32_t node) const {
    return node < load_factors.size() ? load_factors[node] : nodes[node].load_factor;
  }
};

// A load-balancing algorithm: picks one candidate node for a new connection. One instance exists
// per cluster, shared by every worker thread: Cluster calls pick() under its lock, so an
// implementation may keep mutable state without locks or atomics (and the sequence is that of
// one balancer); it must not allocate in pick(). Reading NodeRuntime counters (relaxed) is
// allowed.
class Algorithm {
 public:
  virtual ~Algorithm() = default;
  // Returns one element of in.candidates (a node index, not a position in candidates).
  virtual std::uint32_t pick(const PickInput& in) = 0;
};

struct AlgorithmParams {
  const config::ClusterConfig& cluster;
  std::uint64_t seed;  // for algorithms that draw random numbers; tests inject a fixed one
};

// The registry: one line per algorithm (see algorithm_registry.cpp).
struct AlgorithmEntry {
  std::string_view name;
  std::unique_ptr<Algorithm> (*make)(const AlgorithmParams&);
  // Checks the cluster's algorithm-specific keys; returns an empty string when they are fine,
  // else the message. May be null when the algorithm has no keys of its own.
  std::string (*validate)(const config::ClusterConfig&);
  // Where a validate() message points: the position of the key it checks, e.g.
  // &ClusterConfig::load_rating_pos. Null, or a key absent from the file (line 0), points at the
  // [[cluster]] table instead.
  config::SourcePos config::ClusterConfig::*key_pos = nullptr;
};

std::span<const AlgorithmEntry> algorithms();
const AlgorithmEntry* find_algorithm(std::string_view name);

// Appends a diagnostic for an unknown algorithm name or bad algorithm-specific keys
// (load_rating, hash_key) of each cluster, and for node-graph problems (fall-over names an
// unknown node, fall-over cycles, tier < 1, every node offline).
void validate(const config::Config& cfg, std::vector<config::Diagnostic>& errors);

}  // namespace pb::balance
