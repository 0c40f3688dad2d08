#include "protobalance/control/status.hpp"

#include <algorithm>
#include <mutex>

#include "protobalance/balance/steady_clock.hpp"
#include "protobalance/config/address.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/net/client_phase.hpp"
#include "protobalance/net/session.hpp"

namespace pb::control {

namespace {

constexpr std::memory_order kRelaxed = std::memory_order_relaxed;

// A steady-clock time of the runtime (ns; 0 = never) as wall-clock time: the steady clock has
// no calendar, so the age is taken from now on both clocks.
std::optional<WallTime> wall_time(std::int64_t steady_ns, std::int64_t steady_now) {
  if (steady_ns == 0) return std::nullopt;
  const auto age = std::chrono::nanoseconds(std::max<std::int64_t>(0, steady_now - steady_ns));
  return std::chrono::system_clock::now() -
         std::chrono::duration_cast<std::chrono::system_clock::duration>(age);
}

// Remaining slow-start ramp of a node, or none when it is at full weight.
std::optional<std::chrono::milliseconds> slow_start_remaining(const balance::Cluster& cluster,
                                                              const balance::NodeRuntime& rt,
                                                              std::int64_t now) {
  const auto ramp =
      std::chrono::duration_cast<std::chrono::nanoseconds>(cluster.config().slow_start).count();
  const std::int64_t since = rt.eligible_since_ns.load(kRelaxed);
  if (ramp <= 0 || since == 0 || now - since >= ramp) return std::nullopt;
  return std::chrono::milliseconds((ramp - (now - since)) / 1'000'000);
}

CheckStatus check_status(const balance::NodeRuntime& rt, std::int64_t now) {
  CheckStatus check;
  check.down = rt.check_down.load(kRelaxed);
  if (rt.last_check_ns.load(kRelaxed) != 0) check.last_result = rt.last_check.load(kRelaxed);
  check.last_change = wall_time(rt.check_changed_ns.load(kRelaxed), now);
  check.passed_in_row = rt.checks_passed_in_row.load(kRelaxed);
  check.failed_in_row = rt.checks_failed_in_row.load(kRelaxed);
  if (const std::int64_t failed_ns = rt.last_check_failure_ns.load(kRelaxed); failed_ns != 0) {
    check.last_failure = rt.last_check_failure.load(kRelaxed);
    check.last_failure_at = wall_time(failed_ns, now);
    std::lock_guard lock(rt.check_mutex);
    check.last_failure_detail = rt.last_check_failure_detail;
  }
  return check;
}

AgentStatus agent_status(const balance::NodeRuntime& rt, std::int64_t reported_ns,
                         std::int64_t now) {
  AgentStatus agent;
  agent.state = rt.agent_state.load(kRelaxed);
  agent.down = rt.agent_down.load(kRelaxed);
  agent.weight_percent = rt.agent_weight_percent.load(kRelaxed);
  agent.reported = wall_time(reported_ns, now);
  return agent;
}

NodeStatus node_status(const balance::Cluster& cluster, std::uint32_t index, std::int64_t now) {
  const balance::Node& node = cluster.nodes()[index];
  const balance::NodeRuntime& rt = *node.runtime;
  NodeStatus out;
  out.name = node.name;
  out.address = node.address;
  out.state = rt.admin_state.load(kRelaxed);
  out.effective_state = rt.effective_state();
  const std::int64_t since = rt.unavailable_since_ns.load(kRelaxed);
  out.reachable = since == 0;
  out.unavailable_since = wall_time(since, now);
  out.check_down = rt.check_down.load(kRelaxed);
  out.agent_down = rt.agent_down.load(kRelaxed);
  out.active = rt.active.load(kRelaxed);
  out.total = rt.total.load(kRelaxed);
  for (std::size_t i = 0; i < out.failures.size(); ++i) {
    out.failures[i] = rt.failures[i].load(kRelaxed);
  }
  out.failovers = rt.failovers.load(kRelaxed);
  out.bytes_to_node = rt.bytes_to_node.load(kRelaxed);
  out.bytes_to_client = rt.bytes_to_client.load(kRelaxed);
  for (std::size_t i = 0; i < out.connect_buckets.size(); ++i) {
    out.connect_buckets[i] = rt.connect_buckets[i].load(kRelaxed);
  }
  out.connect_time_sum_us = rt.connect_time_sum_us.load(kRelaxed);
  if (const std::int64_t ewma = rt.latency_ewma_us.load(kRelaxed); ewma >= 0) {
    out.latency_ewma_us = ewma;
  }
  for (std::size_t i = 0; i < out.check_failures.size(); ++i) {
    out.check_failures[i] = rt.check_failures[i].load(kRelaxed);
  }
  std::int64_t reported_ns = 0;
  {
    std::lock_guard lock(rt.agent_mutex);
    out.agent_values = rt.agent_values;
    reported_ns = rt.agent_values_ns;
  }
  out.load_factor = node.load_factor;
  out.effective_load_factor = cluster.effective_load_factor(index, now);
  out.max_connections = node.max_connections;
  out.tier = node.tier;
  if (node.fallover >= 0) {
    out.fallover = cluster.nodes()[static_cast<std::uint32_t>(node.fallover)].name;
  }
  out.slow_start_remaining = slow_start_remaining(cluster, rt, now);
  if (cluster.config().health) out.check = check_status(rt, now);
  if (cluster.config().agent) out.agent = agent_status(rt, reported_ns, now);
  return out;
}

}  // namespace

std::uint64_t NodeStatus::failures_total() const {
  std::uint64_t sum = 0;
  for (const std::uint64_t count : failures) sum += count;
  return sum;
}

Status take_status(const Runtime& runtime) {
  Status status;
  const auto snapshot = runtime.snapshot();
  const auto endpoints = runtime.listener_endpoints();
  const auto listener_stats = runtime.listener_stats();

  for (const auto& l : snapshot->config->listeners) {
    ListenerStatus& out = status.listeners.emplace_back();
    out.name = l.name;
    const auto bound = endpoints.find(l.name);
    out.address = bound == endpoints.end() ? l.address : config::format_endpoint(bound->second);
    const auto route = snapshot->routes.find(l.name);
    out.cluster = route == snapshot->routes.end() ? l.cluster : route->second;
    out.configured_cluster = l.cluster;
    for (const auto& configured : l.routes) {
      auto& sni_route = out.sni_routes.emplace_back();
      for (const auto& name : configured.sni) sni_route.sni.push_back(name.text);
      sni_route.cluster = configured.cluster;
    }
    const auto counters = listener_stats.find(l.name);
    if (counters == listener_stats.end() || !counters->second) continue;
    const net::ListenerStats& s = *counters->second;
    out.connections = s.connections.load(kRelaxed);
    out.active = s.active.load(kRelaxed);
    for (std::size_t i = 0; i < net::kRejectReasons; ++i) {
      out.rejected.emplace_back(std::string(net::to_string(static_cast<net::RejectReason>(i))),
                                s.rejected[i].load(kRelaxed));
    }
  }

  const std::int64_t now = balance::now_ns();
  for (const auto& cfg : snapshot->config->clusters) {
    const auto found = snapshot->clusters.find(cfg.name);
    if (found == snapshot->clusters.end()) continue;
    const balance::Cluster& cluster = *found->second;
    ClusterStatus& out = status.clusters.emplace_back();
    out.name = cfg.name;
    out.algorithm = cfg.algorithm;
    out.affinity = cfg.affinity.enabled;
    for (std::uint32_t index = 0; index < cluster.nodes().size(); ++index) {
      out.nodes.push_back(node_status(cluster, index, now));
    }
  }

  status.active_sessions = runtime.active_sessions();
  status.accept_pauses = runtime.accept_stats().pauses.load(kRelaxed);
  status.affinity_entries = runtime.affinity().size();
  status.blocks = runtime.blocks_in_force();
  if (const auto& twin = snapshot->config->twin; twin.enabled) {
    TwinStatus& out = status.twin.emplace();
    out.redis = twin.redis;
    out.instance = twin.instance;
    if (const auto stats = runtime.twin_stats()) {
      out.connected = stats->connected;
      out.subscribed = stats->subscribed;
      if (stats->since != WallTime{}) out.since = stats->since;
      out.last_error = stats->last_error;
      out.messages_sent = stats->messages_sent;
      out.messages_received = stats->messages_received;
      out.lookups_hit = stats->lookups_hit;
      out.lookups_miss = stats->lookups_miss;
      out.lookups_timeout = stats->lookups_timeout;
      out.conflicts = stats->conflicts;
      out.instances = stats->instances;
    }
  }
  return status;
}

}  // namespace pb::control
