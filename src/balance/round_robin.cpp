// Smooth weighted round robin, as in nginx's ngx_http_upstream_get_peer(): on every pick each
// candidate's `current` grows by its weight, the largest `current` wins and pays back the sum of
// the weights. Over any sum-of-weights picks each node gets exactly its weight, spread out
// (weights 1,2,3 give c,b,c,a,b,c) instead of the bursts of plain weighted round robin.
//
// One difference from nginx: when two `current` values tie, the heavier node wins (nginx takes
// the one listed first). The shares are the same either way, but the heavier node going first
// keeps its picks evenly spaced (1,2,3 gives c,b,c,a,b,c rather than c,b,a,c,b,c, where c's
// picks bunch up at the end) and makes the sequence independent of the order nodes are listed
// in, apart from equal weights, which rotate in list order.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

// Load factors are doubles; the sums run on integers scaled by this so that fractional weights
// (0.5, 1.25) are honoured and no rounding error accumulates over months of picks.
constexpr double kWeightScale = 1000.0;

class RoundRobin final : public Algorithm {
 public:
  explicit RoundRobin(std::size_t node_count) : current_(node_count, 0) {}

  std::uint32_t pick(const PickInput& in) override {
    std::int64_t total = 0;
    std::uint32_t best = in.candidates.front();
    std::int64_t best_weight = 0;
    bool have_best = false;
    for (const std::uint32_t node : in.candidates) {
      if (node >= current_.size()) continue;  // not a node of the configured cluster
      const std::int64_t weight = scaled_weight(in.load_factor(node));
      current_[node] += weight;
      total += weight;
      if (!have_best || current_[node] > current_[best] ||
          (current_[node] == current_[best] && weight > best_weight)) {
        best = node;
        best_weight = weight;
        have_best = true;
      }
    }
    if (have_best) current_[best] -= total;
    return best;
  }

 private:
  static std::int64_t scaled_weight(double load_factor) {
    if (!(load_factor > 0.0)) return 0;
    return std::max<std::int64_t>(1, std::llround(load_factor * kWeightScale));
  }

  // Per node index (not per candidate position): a node that is skipped for a while keeps its
  // credit, as in nginx.
  std::vector<std::int64_t> current_;
};

}  // namespace

std::unique_ptr<Algorithm> make_round_robin(const AlgorithmParams& params) {
  return std::make_unique<RoundRobin>(params.cluster.nodes.size());
}

}  // namespace pb::balance
