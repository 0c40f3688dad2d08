// Least connections: the candidate with the fewest active connections per unit of load factor,
// so a node with load_factor 2 carries twice the connections of one with 1. Active counts
// include connections still being attempted, so a burst of new clients spreads out at once.

#include <cstdint>
#include <memory>

#include "least_score.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

class LeastConnections final : public Algorithm {
 public:
  explicit LeastConnections(std::size_t node_count) : least_(node_count) {}

  std::uint32_t pick(const PickInput& in) override {
    return least_.pick(in.candidates, [&](std::uint32_t node) {
      const Node& n = in.nodes[node];
      const auto active = n.runtime->active.load(std::memory_order_relaxed);
      return detail::per_load_factor(static_cast<double>(active), in.load_factor(node));
    });
  }

 private:
  detail::LeastScore least_;
};

}  // namespace

std::unique_ptr<Algorithm> make_least_connections(const AlgorithmParams& params) {
  return std::make_unique<LeastConnections>(params.cluster.nodes.size());
}

}  // namespace pb::balance
