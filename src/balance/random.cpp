// Weighted random: each candidate is drawn with probability load_factor / sum of load factors.
// The PRNG is seeded from AlgorithmParams::seed, so tests reproduce a sequence exactly; the
// cluster's one instance serves every worker thread (under the cluster's lock).

#include <cstdint>
#include <memory>
#include <random>

#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

class WeightedRandom final : public Algorithm {
 public:
  explicit WeightedRandom(std::uint64_t seed) : rng_(seed) {}

  std::uint32_t pick(const PickInput& in) override {
    double total = 0.0;
    for (const std::uint32_t node : in.candidates) total += weight(in.load_factor(node));
    if (!(total > 0.0)) {
      // No candidate has a positive weight: fall back to a uniform draw rather than always the
      // first one.
      return in.candidates[rng_() % in.candidates.size()];
    }
    double point = unit() * total;
    for (const std::uint32_t node : in.candidates) {
      point -= weight(in.load_factor(node));
      if (point < 0.0) return node;
    }
    // Rounding left a sliver past the last weight: it belongs to the last weighted candidate.
    for (auto it = in.candidates.rbegin(); it != in.candidates.rend(); ++it) {
      if (weight(in.load_factor(*it)) > 0.0) return *it;
    }
    return in.candidates.back();
  }

 private:
  static double weight(double load_factor) { return load_factor > 0.0 ? load_factor : 0.0; }

  // Uniform in [0, 1) from the top 53 bits; unlike std::uniform_real_distribution the result is
  // the same with every standard library, so a seed means the same sequence everywhere.
  double unit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  std::mt19937_64 rng_;
};

}  // namespace

std::unique_ptr<Algorithm> make_random(const AlgorithmParams& params) {
  return std::make_unique<WeightedRandom>(params.seed);
}

}  // namespace pb::balance
