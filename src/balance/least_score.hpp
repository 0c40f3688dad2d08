#pragma once

// Shared by the "lowest score wins" algorithms (least_connections, least_latency, min_load):
// the choice of the lowest score with ties broken round robin. Private to src/balance.

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace pb::balance::detail {

// Divides a node's load by its load factor; a node with no positive load factor gets no share,
// so it scores worst (never NaN, which would make every comparison false).
inline double per_load_factor(double load, double load_factor) {
  if (!(load_factor > 0.0)) return std::numeric_limits<double>::infinity();
  return load / load_factor;
}

// Picks the candidate with the lowest score. Among equal scores it takes the one picked least
// recently, so tied nodes are served in strict rotation instead of the first one always winning
// (which would, e.g., send every connection of an idle cluster to its first node).
class LeastScore {
 public:
  explicit LeastScore(std::size_t node_count) : last_pick_(node_count, 0) {}

  // score(node) must return a comparable double; NaN counts as the worst score.
  template <typename ScoreFn>
  std::uint32_t pick(std::span<const std::uint32_t> candidates, ScoreFn&& score) {
    std::uint32_t best = candidates.front();
    double best_score = std::numeric_limits<double>::infinity();
    bool have_best = false;
    for (const std::uint32_t node : candidates) {
      double s = score(node);
      if (s != s) s = std::numeric_limits<double>::infinity();
      if (!have_best || s < best_score || (s == best_score && stamp(node) < stamp(best))) {
        best = node;
        best_score = s;
        have_best = true;
      }
    }
    if (best < last_pick_.size()) last_pick_[best] = ++clock_;
    return best;
  }

 private:
  std::uint64_t stamp(std::uint32_t node) const {
    return node < last_pick_.size() ? last_pick_[node] : 0;
  }

  std::vector<std::uint64_t> last_pick_;  // per node index: clock_ at its last pick, 0 = never
  std::uint64_t clock_ = 0;
};

}  // namespace pb::balance::detail
