// Least latency: the candidate with the shortest recent connect time (EWMA, microseconds) per
// unit of load factor. A node without a sample yet (new, or never connected) scores lowest so
// that it gets measured instead of being starved by nodes that already have a good figure.

#include <cstdint>
#include <memory>

#include "least_score.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

class LeastLatency final : public Algorithm {
 public:
  explicit LeastLatency(std::size_t node_count) : least_(node_count) {}

  std::uint32_t pick(const PickInput& in) override {
    return least_.pick(in.candidates, [&](std::uint32_t node) {
      const Node& n = in.nodes[node];
      const auto ewma_us = n.runtime->latency_ewma_us.load(std::memory_order_relaxed);
      // Below any real score (which is >= 0); ties among unmeasured nodes rotate.
      if (ewma_us < 0) return -1.0;
      return detail::per_load_factor(static_cast<double>(ewma_us), in.load_factor(node));
    });
  }

 private:
  detail::LeastScore least_;
};

}  // namespace

std::unique_ptr<Algorithm> make_least_latency(const AlgorithmParams& params) {
  return std::make_unique<LeastLatency>(params.cluster.nodes.size());
}

}  // namespace pb::balance
