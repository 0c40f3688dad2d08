#include "protobalance/control/status_document.hpp"

#include <numeric>

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include "protobalance/config/utc_time.hpp"

namespace pb::control {

namespace json = boost::json;

namespace {

json::value time_value(const std::optional<WallTime>& time) {
  if (!time) return nullptr;
  return json::value(config::format_utc(
      std::chrono::duration_cast<std::chrono::seconds>(time->time_since_epoch()).count()));
}

// The last failed check: why, what came back (for a mismatch) or the error, and when.
json::value last_failure_value(const CheckStatus& check) {
  if (!check.last_failure) return nullptr;
  return json::object{{"reason", balance::to_string(*check.last_failure)},
                      {"detail", check.last_failure_detail},
                      {"at", time_value(check.last_failure_at)}};
}

// [twin]: null without it.
json::value twin_value(const std::optional<TwinStatus>& twin) {
  if (!twin) return nullptr;
  json::array instances;
  for (const auto& [name, seen] : twin->instances) {
    instances.push_back(json::object{{"instance", name}, {"last_heard", time_value(seen)}});
  }
  return json::object{{"redis", twin->redis},
                      {"instance", twin->instance},
                      {"connected", twin->connected},
                      {"subscribed", twin->subscribed},
                      {"since", time_value(twin->since)},
                      {"last_error", twin->last_error},
                      {"messages_sent", twin->messages_sent},
                      {"messages_received", twin->messages_received},
                      {"lookups", json::object{{"hit", twin->lookups_hit},
                                               {"miss", twin->lookups_miss},
                                               {"timeout", twin->lookups_timeout}}},
                      {"conflicts", twin->conflicts},
                      {"instances", std::move(instances)}};
}

json::value check_value(const std::optional<CheckStatus>& check) {
  if (!check) return nullptr;
  return json::object{
      {"down", check->down},
      {"last_result", check->last_result ? json::value(balance::to_string(*check->last_result))
                                         : json::value(nullptr)},
      {"last_change", time_value(check->last_change)},
      {"passed_in_row", check->passed_in_row},
      {"failed_in_row", check->failed_in_row},
      {"last_failure", last_failure_value(*check)}};
}

json::value agent_value(const std::optional<AgentStatus>& agent,
                        const std::vector<balance::AgentValue>& reported) {
  if (!agent) return nullptr;
  json::object values;
  for (const auto& v : reported) values[v.name] = v.value;
  return json::object{{"state", config::to_string(agent->state)},
                      {"down", agent->down},
                      {"weight_percent", agent->weight_percent},
                      {"values", std::move(values)},
                      {"reported", time_value(agent->reported)}};
}

json::object node_value(const NodeStatus& node) {
  json::value slow_start = nullptr;
  if (node.slow_start_remaining) {
    slow_start = json::object{{"remaining_ms", node.slow_start_remaining->count()}};
  }
  return json::object{
      {"name", node.name},
      {"address", node.address},
      {"state", config::to_string(node.state)},
      {"up", node.reachable},
      {"since", time_value(node.unavailable_since)},
      {"active", node.active},
      {"total", node.total},
      // Summed here rather than with NodeStatus::failures_total(), which lives with
      // take_status: the document is also built without the runtime (the admin fuzz target).
      {"failures", std::accumulate(node.failures.begin(), node.failures.end(), std::uint64_t{0})},
      {"failovers", node.failovers},
      {"bytes_to_node", node.bytes_to_node},
      {"bytes_to_client", node.bytes_to_client},
      {"load_factor", node.load_factor},
      {"max_connections", node.max_connections},
      {"tier", node.tier},
      {"fallover", node.fallover ? json::value(*node.fallover) : json::value(nullptr)},
      // The state in force (operator's or agent's, the more restrictive), the load factor the
      // algorithm uses now (agent percent, slow start), checks and agent.
      {"effective_state", config::to_string(node.effective_state)},
      {"effective_load_factor", node.effective_load_factor},
      {"slow_start", std::move(slow_start)},
      {"check", check_value(node.check)},
      {"agent", agent_value(node.agent, node.agent_values)}};
}

}  // namespace

boost::json::object status_document(const Status& status) {
  json::array listeners;
  for (const auto& l : status.listeners) {
    json::array sni_routes;
    for (const auto& route : l.sni_routes) {
      json::array names;
      for (const auto& name : route.sni) names.emplace_back(name);
      sni_routes.push_back(json::object{{"sni", std::move(names)}, {"cluster", route.cluster}});
    }
    listeners.push_back(json::object{{"name", l.name},
                                     {"address", l.address},
                                     {"cluster", l.cluster},
                                     {"configured_cluster", l.configured_cluster},
                                     {"routed", l.routed()},
                                     {"active", l.active},
                                     {"connections", l.connections},
                                     {"sni_routes", std::move(sni_routes)}});
  }
  json::array clusters;
  for (const auto& c : status.clusters) {
    json::array nodes;
    for (const auto& node : c.nodes) nodes.push_back(node_value(node));
    clusters.push_back(json::object{{"name", c.name},
                                    {"algorithm", c.algorithm},
                                    {"affinity", c.affinity},
                                    {"nodes", std::move(nodes)}});
  }
  return json::object{{"listeners", std::move(listeners)},
                      {"clusters", std::move(clusters)},
                      {"affinity_entries", status.affinity_entries},
                      {"blocks", status.blocks},
                      {"twin", twin_value(status.twin)}};
}

}  // namespace pb::control
