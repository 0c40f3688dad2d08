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

std::string_view to_string(CheckResult result) {
  switch (result) {
    case CheckResult::timeout:
      return "timeout";
    case CheckResult::refused:
      return "refused";
    case CheckResult::reset:
      return "reset";
    case CheckResult::closed:
      return "closed";
    case CheckResult::mismatch:
      return "mismatch";
    case CheckResult::ok:
      return "ok";
  }
  return "unknown";
}

std::optional<double> NodeRuntime::agent_value(std::string_view name,
                                               std::int64_t fresh_after_ns) const {
  std::lock_guard lock(agent_mutex);
  if (agent_values_ns == 0 || agent_values_ns < fresh_after_ns) return std::nullopt;
  for (const auto& v : agent_values) {
    if (v.name == name) return v.value;
  }
  return std::nullopt;
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
