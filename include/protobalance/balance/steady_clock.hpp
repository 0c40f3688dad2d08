#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace pb::balance {

// Now on the steady clock, in nanoseconds: the unit of the times in the nodes' run-time state
// (NodeRuntime). Never 0: 0 means "up" in NodeRuntime::unavailable_since_ns.
inline std::int64_t now_ns() {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
  return std::max<std::int64_t>(ns, 1);
}

}  // namespace pb::balance
