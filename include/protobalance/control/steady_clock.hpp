#pragma once

#include <chrono>
#include <cstdint>

namespace pb::control {

// Now on the steady clock, in nanoseconds: the unit of the times in the nodes' run-time state
// (balance::NodeRuntime).
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace pb::control
