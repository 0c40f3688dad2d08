#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "protobalance/config/config.hpp"

namespace pb::balance {

using config::AdminState;
using Clock = std::chrono::steady_clock;

// Why a connection to a node failed before any byte was relayed.
enum class FailureReason : std::uint8_t { refused, timeout, reset, closed, unreachable };
inline constexpr std::size_t kFailureReasons = 5;
std::string_view to_string(FailureReason reason);

// A 64-bit hash of a node name that is the same in every process and on every platform
// (FNV-1a), so that balancers sharing a hash_key agree on rendezvous scores.
std::uint64_t stable_name_hash(std::string_view name);

// Run-time state of one node, shared by all worker threads and kept across reloads (it is keyed
// by cluster and node name in NodeRegistry). Every field is an atomic: the hot path takes no lock.
struct alignas(64) NodeRuntime {
  std::atomic<std::int64_t> active{0};  // connections being attempted or relayed
  std::atomic<std::uint64_t> total{0};  // connections established
  std::array<std::atomic<std::uint64_t>, kFailureReasons> failures{};
  std::atomic<std::uint64_t> bytes_to_node{0};
  std::atomic<std::uint64_t> bytes_to_client{0};
  std::atomic<std::int64_t> latency_ewma_us{-1};  // -1 until the first sample
  std::atomic<AdminState> admin_state{AdminState::available};
  // Availability: 0 when up; else when the node was marked unavailable (steady clock, ns).
  std::atomic<std::int64_t> unavailable_since_ns{0};
  std::atomic<std::int64_t> next_probe_ns{0};

  std::uint64_t failures_total() const;
  bool up() const { return unavailable_since_ns.load(std::memory_order_relaxed) == 0; }
};

// One node of a cluster as the current configuration describes it (immutable) plus a pointer to
// its run-time state.
struct Node {
  std::string name;
  config::Endpoint endpoint;
  std::string address;  // as configured
  double load_factor = 1.0;
  std::uint32_t max_connections = 0;
  std::int32_t fallover = -1;  // index into the cluster's nodes, -1 = none
  std::uint32_t tier = 1;
  std::uint64_t name_hash = 0;  // stable 64-bit hash of the name, for rendezvous hashing
  std::shared_ptr<NodeRuntime> runtime;
};

}  // namespace pb::balance
