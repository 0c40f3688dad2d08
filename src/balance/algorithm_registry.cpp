// The table of algorithms. Adding one: write src/balance/<name>.cpp with its factory (and
// validate function if it has keys of its own), declare them in algorithms.hpp, add a line here.

#include <array>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

using config::ClusterConfig;

constexpr std::array kAlgorithms{
    AlgorithmEntry{"round_robin", make_round_robin, nullptr, nullptr},
    AlgorithmEntry{"random", make_random, nullptr, nullptr},
    AlgorithmEntry{"least_connections", make_least_connections, nullptr, nullptr},
    AlgorithmEntry{"least_latency", make_least_latency, nullptr, nullptr},
    AlgorithmEntry{"min_load", make_min_load, validate_min_load, &ClusterConfig::load_rating_pos},
    AlgorithmEntry{"hash", make_hash, validate_hash, &ClusterConfig::hash_key_pos},
};

}  // namespace

std::span<const AlgorithmEntry> algorithms() {
  return kAlgorithms;
}

const AlgorithmEntry* find_algorithm(std::string_view name) {
  for (const auto& entry : kAlgorithms) {
    if (entry.name == name) return &entry;
  }
  return nullptr;
}

}  // namespace pb::balance
