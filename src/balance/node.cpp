#include "protobalance/balance/node.hpp"

#include <algorithm>

namespace pb::balance {

std::string_view to_string(FailureReason reason) {
  switch (reason) {
    case FailureReason::refused:
      return "refused";
    case FailureReason::timeout:
      return "timeout";
    case FailureReason::reset:
      return "reset";
    case FailureReason::closed:
      return "closed";
    case FailureReason::unreachable:
      return "unreachable";
  }
  return "unknown";
}

std::uint64_t stable_name_hash(std::string_view name) {
  // FNV-1a 64: tiny, and fully specified by its constants, so every build agrees on it.
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (const char c : name) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::uint64_t NodeRuntime::failures_total() const {
  std::uint64_t sum = 0;
  for (const auto& count : failures) sum += count.load(std::memory_order_relaxed);
  return sum;
}

void NodeRuntime::record_connect_time(std::chrono::nanoseconds elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  std::size_t bucket = 0;
  while (bucket < kConnectBuckets.size() && seconds > kConnectBuckets[bucket]) ++bucket;
  connect_buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  connect_time_sum_us.fetch_add(
      static_cast<std::uint64_t>(
          std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count())),
      std::memory_order_relaxed);
}

}  // namespace pb::balance
