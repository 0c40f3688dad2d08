#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <algorithm>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protobalance/config/config.hpp"

namespace pb::balance {

using config::AdminState;
using Clock = std::chrono::steady_clock;

// Why a connection to a node failed before any byte was relayed.
enum class FailureReason : std::uint8_t { refused, timeout, reset, closed, unreachable };
inline constexpr std::size_t kFailureReasons = 5;
std::string_view to_string(FailureReason reason);

// Why an active health check failed ([cluster.health]); `ok` when it passed.
enum class CheckResult : std::uint8_t { timeout, refused, reset, closed, mismatch, ok };
inline constexpr std::size_t kCheckFailureReasons = 5;  // every value before `ok`
std::string_view to_string(CheckResult result);

// One value a node's agent reported (name=value), for the load_rating expression.
struct AgentValue {
  std::string name;
  double value = 0.0;
};

// A 64-bit hash of a node name that is the same in every process and on every platform
// (FNV-1a), so that balancers sharing a hash_key agree on rendezvous scores.
std::uint64_t stable_name_hash(std::string_view name);

// Upper bounds (seconds) of the connect-time histogram buckets: loopback through WAN.
inline constexpr std::array<double, 16> kConnectBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

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
  // Connections that failed on this node before any byte and were retried elsewhere.
  std::atomic<std::uint64_t> failovers{0};
  // Connect times: per-bucket counts (not cumulative; the last one is +Inf) and their sum.
  std::array<std::atomic<std::uint64_t>, kConnectBuckets.size() + 1> connect_buckets{};
  std::atomic<std::uint64_t> connect_time_sum_us{0};

  // Steady-clock time of the last failed client connect (0 = never): the last-resort tries go
  // to the node that failed least recently first.
  std::atomic<std::int64_t> last_failure_ns{0};

  // Active health checks ([cluster.health]). Written by the one checker of the node; read by
  // everyone. check_down is set after `fall` failed checks in a row and cleared after `rise`
  // passed ones; a node down by its checks takes no client, not even as a last resort.
  std::atomic<bool> check_down{false};
  std::atomic<std::uint32_t> checks_passed_in_row{0};
  std::atomic<std::uint32_t> checks_failed_in_row{0};
  std::atomic<CheckResult> last_check{CheckResult::ok};
  std::atomic<std::int64_t> last_check_ns{0};     // 0 = never checked
  std::atomic<std::int64_t> check_changed_ns{0};  // last change of check_down, 0 = never
  std::array<std::atomic<std::uint64_t>, kCheckFailureReasons> check_failures{};
  // The last failed check, for status: its reason (ok = none yet), when (steady ns) and what
  // came back or the error (printable, shortened).
  std::atomic<CheckResult> last_check_failure{CheckResult::ok};
  std::atomic<std::int64_t> last_check_failure_ns{0};
  mutable std::mutex check_mutex;  // guards last_check_failure_detail
  std::string last_check_failure_detail;
  std::atomic<bool> checker_running{false};  // one check loop per node, see control::Runtime

  // Agent ([cluster.agent]): the node's own word on its state, next to the operator's
  // admin_state (the more restrictive of the two applies), its weight in percent of the
  // configured load factor, and its name=value figures.
  std::atomic<AdminState> agent_state{AdminState::available};
  std::atomic<bool> agent_down{false};
  std::atomic<std::uint32_t> agent_weight_percent{100};
  std::atomic<bool> agent_running{false};
  mutable std::mutex agent_mutex;                    // guards the two below (rarely contended)
  std::vector<AgentValue> agent_values;              // last good report
  std::int64_t agent_values_ns = 0;                  // when it came, 0 = never

  // Slow start: when the node last became eligible again (steady ns); 0 = at full weight.
  std::atomic<std::int64_t> eligible_since_ns{0};

  std::uint64_t failures_total() const;
  // The admin state in force: the more restrictive of the operator's and the agent's.
  AdminState effective_state() const {
    return std::max(admin_state.load(std::memory_order_relaxed),
                    agent_state.load(std::memory_order_relaxed));
  }
  // The agent's value `name` if reported at or after `fresh_after_ns`.
  std::optional<double> agent_value(std::string_view name, std::int64_t fresh_after_ns) const;
  // Counts one connect time into the histogram.
  void record_connect_time(std::chrono::nanoseconds elapsed);
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
