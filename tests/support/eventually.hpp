#pragma once

#include <chrono>
#include <thread>

#include "support/client.hpp"

namespace pb::test {

// Polls `condition` every 20 ms until it holds or the deadline passes; returns whether it held
// (one last look at the deadline, so a condition that became true just then still counts).
template <typename Condition>
bool eventually(Condition&& condition, Deadline deadline) {
  for (;;) {
    const bool last = std::chrono::steady_clock::now() >= deadline;
    if (condition()) return true;
    if (last) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // polling, bounded by the deadline
  }
}

}  // namespace pb::test
