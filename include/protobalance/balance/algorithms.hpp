#pragma once

// The six built-in algorithms, one source file each (src/balance/<name>.cpp). The registry in
// algorithm_registry.cpp is the only place that lists them; everything else looks them up by
// name with find_algorithm().

#include <memory>
#include <string>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/config/config.hpp"

namespace pb::balance {

// Smooth weighted round robin (nginx): over any run of picks each candidate gets its pro-rata
// share, interleaved rather than in bursts.
std::unique_ptr<Algorithm> make_round_robin(const AlgorithmParams& params);

// Weighted random, drawn from a PRNG seeded with params.seed.
std::unique_ptr<Algorithm> make_random(const AlgorithmParams& params);

// Lowest active / load_factor; ties go to the candidate picked least recently.
std::unique_ptr<Algorithm> make_least_connections(const AlgorithmParams& params);

// Lowest EWMA connect time / load_factor; nodes without a sample yet come first.
std::unique_ptr<Algorithm> make_least_latency(const AlgorithmParams& params);

// Lowest value of the cluster's load_rating expression. Throws std::invalid_argument when the
// expression does not compile (validate_min_load() reports that at config load instead).
std::unique_ptr<Algorithm> make_min_load(const AlgorithmParams& params);
std::string validate_min_load(const config::ClusterConfig& cluster);

// Weighted rendezvous hashing of the client address, keyed SipHash-2-4. Throws
// std::invalid_argument when the cluster has no hash_key (validate_hash() reports that).
std::unique_ptr<Algorithm> make_hash(const AlgorithmParams& params);
std::string validate_hash(const config::ClusterConfig& cluster);

}  // namespace pb::balance
