#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "protobalance/balance/node.hpp"
#include "protobalance/config/config.hpp"

// What the balancer is doing now, as plain values: listeners, clusters and nodes with their
// counters, states, checks, agent reports and slow-start ramps. Taken in one place
// (take_status) from the running configuration and the atomics the workers update, and read by
// every reporter alike: the admin API's status document, the Prometheus exporter and the SNMP
// sub-agent. None of them walks the runtime's internal structures; a reporter that needs a new
// figure adds it here.
namespace pb::control {

class Runtime;

using WallTime = std::chrono::system_clock::time_point;

// [cluster.health] of one node.
struct CheckStatus {
  bool down = false;  // `fall` checks failed in a row; cleared after `rise` passed ones
  std::optional<balance::CheckResult> last_result;  // none before the first check
  std::optional<WallTime> last_change;              // of `down`; none while it never changed
  std::uint32_t passed_in_row = 0;
  std::uint32_t failed_in_row = 0;
  // The last failed check: its reason, what came back (for a mismatch) and when.
  std::optional<balance::CheckResult> last_failure;
  std::string last_failure_detail;
  std::optional<WallTime> last_failure_at;
};

// [cluster.agent] of one node.
struct AgentStatus {
  config::AdminState state = config::AdminState::available;
  bool down = false;
  std::uint32_t weight_percent = 100;
  std::optional<WallTime> reported;  // when the last good reply came; none before one
};

struct NodeStatus {
  std::string name;
  std::string address;  // as configured
  config::AdminState state = config::AdminState::available;            // the operator's
  config::AdminState effective_state = config::AdminState::available;  // operator's or agent's
  bool reachable = true;                     // not marked unavailable by a failed connect
  std::optional<WallTime> unavailable_since;  // none while reachable
  bool check_down = false;                   // down by its [cluster.health] checks
  bool agent_down = false;                   // down by its agent's word

  std::int64_t active = 0;
  std::uint64_t total = 0;
  std::array<std::uint64_t, balance::kFailureReasons> failures{};  // by balance::FailureReason
  std::uint64_t failovers = 0;
  std::uint64_t bytes_to_node = 0;
  std::uint64_t bytes_to_client = 0;
  // Connect times: per-bucket counts (not cumulative; the last is +Inf, see
  // balance::kConnectBuckets) and their sum.
  std::array<std::uint64_t, balance::kConnectBuckets.size() + 1> connect_buckets{};
  std::uint64_t connect_time_sum_us = 0;
  std::optional<std::int64_t> latency_ewma_us;  // none before the first connection
  std::array<std::uint64_t, balance::kCheckFailureReasons> check_failures{};  // by CheckResult
  std::vector<balance::AgentValue> agent_values;  // the last good report

  double load_factor = 1.0;            // as configured
  double effective_load_factor = 1.0;  // what the algorithm uses now (agent percent, ramp)
  std::uint32_t max_connections = 0;
  std::uint32_t tier = 1;
  std::optional<std::string> fallover;
  std::optional<std::chrono::milliseconds> slow_start_remaining;  // none at full weight
  std::optional<CheckStatus> check;  // none without [cluster.health]
  std::optional<AgentStatus> agent;  // none without [cluster.agent]

  std::uint64_t failures_total() const;
  // Up in the sense of the node_up metric: reachable and down neither by checks nor by agent.
  bool serving() const { return reachable && !check_down && !agent_down; }
};

struct ClusterStatus {
  std::string name;
  std::string algorithm;
  bool affinity = false;
  std::vector<NodeStatus> nodes;  // in configuration order
};

struct ListenerStatus {
  std::string name;
  std::string address;  // the bound address (port 0 resolved), else as configured
  std::string cluster;  // where new connections go now
  std::string configured_cluster;
  std::uint64_t connections = 0;
  std::int64_t active = 0;
  // Accepted clients closed without being served, by reason name (net::RejectReason).
  std::vector<std::pair<std::string, std::uint64_t>> rejected;
  // [[listener.route]] entries in order: the TLS server names and the cluster they go to.
  struct SniRoute {
    std::vector<std::string> sni;
    std::string cluster;
  };
  std::vector<SniRoute> sni_routes;

  bool routed() const { return cluster != configured_cluster; }
};

// [twin]: the link to the other balancers through Redis.
struct TwinStatus {
  std::string redis;     // as configured
  std::string instance;  // this balancer's name
  bool connected = false;   // the command connection to Redis is up
  bool subscribed = false;  // the twins' messages reach us
  std::optional<WallTime> since;  // of the last change of `connected`; none before the first
  std::string last_error;         // why it is not connected; empty when connected
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t lookups_hit = 0;
  std::uint64_t lookups_miss = 0;
  std::uint64_t lookups_timeout = 0;  // also lookups answered at once while Redis was away
  std::uint64_t conflicts = 0;        // first connections of a client decided first by a twin
  std::vector<std::pair<std::string, WallTime>> instances;  // twins heard in the last 10 min
};

struct Status {
  std::vector<ListenerStatus> listeners;  // in configuration order
  std::vector<ClusterStatus> clusters;    // in configuration order
  std::uint64_t active_sessions = 0;      // client connections over all workers
  std::uint64_t accept_pauses = 0;        // listeners paused for want of descriptors
  std::uint64_t affinity_entries = 0;
  std::uint64_t blocks = 0;  // blocks in force (set at run time, not ended)
  std::optional<TwinStatus> twin;  // none without [twin]
};

// Reads the runtime's current snapshot and counters now. Safe from any thread; takes the
// snapshot lock once and each node's agent lock briefly (never a lock of the hot path).
Status take_status(const Runtime& runtime);

}  // namespace pb::control
