#include "protobalance/control/runtime.hpp"

#include <algorithm>
#include <chrono>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "protobalance/balance/steady_clock.hpp"
#include "protobalance/net/connection.hpp"

namespace pb::control {

namespace asio = boost::asio;

// Node states: the operator's state of a node (set at run time, persisted, restored at start)
// and closing a node's connections when it goes offline.


// Applies the node states saved by an earlier run: an operator's admin state wins over the
// configured initial state; a node that was unavailable stays so until its next probe is due.
void Runtime::restore_node_states() {
  if (!store_) return;
  const auto snap = snapshot();
  const auto wall_now = std::chrono::system_clock::now();
  const std::int64_t steady_now = balance::now_ns();
  for (const auto& row : store_->load_node_states()) {
    auto rt = registry_.find(row.cluster, row.node);
    const config::ClusterConfig* cluster = snap->config->find_cluster(row.cluster);
    if (!rt || cluster == nullptr) continue;  // no longer configured
    if (auto state = config::parse_admin_state(row.admin_state)) {
      rt->admin_state.store(*state, std::memory_order_relaxed);
      spdlog::info("node {}/{}: {} (set at run time, kept across the restart)", row.cluster,
                   row.node, config::to_string(*state));
    }
    if (row.unavailable_since_ms > 0) {
      const auto since_wall = std::chrono::system_clock::time_point(
          std::chrono::milliseconds(row.unavailable_since_ms));
      const auto age = std::chrono::duration_cast<std::chrono::nanoseconds>(wall_now - since_wall);
      const auto retry =
          std::chrono::duration_cast<std::chrono::nanoseconds>(cluster->retry_interval);
      // The first probe slot after now on the node's retry grid.
      const std::int64_t periods = age.count() <= 0 ? 1 : age.count() / retry.count() + 1;
      rt->unavailable_since_ns.store(std::max<std::int64_t>(1, steady_now - age.count()),
                                     std::memory_order_relaxed);
      rt->next_probe_ns.store(steady_now - age.count() + periods * retry.count(),
                              std::memory_order_relaxed);
      spdlog::info(
          "node {}/{}: unavailable since {} s ago (from the last run); next probe in {} ms",
          row.cluster, row.node, age.count() / 1'000'000'000,
          (steady_now - age.count() + periods * retry.count() - steady_now) / 1'000'000);
    }
  }
}

void Runtime::close_node_sessions(const balance::NodeRuntime* target) {
  for (auto& worker : workers_) {
    worker->post([w = worker.get(), target] {
      // Available again before this ran: its new sessions are welcome.
      if (target->effective_state() != config::AdminState::offline) return;
      w->close_connections(
          [target](const net::Connection& c) { return c.node_runtime() == target; });
    });
  }
}

bool Runtime::set_node_state(const std::string& cluster_name, const std::string& node_name,
                             config::AdminState state) {
  return change_node_state(cluster_name, node_name, state, true);
}

// The operator's state of a node, set here (`share`: published to the twins) or by a twin.
bool Runtime::change_node_state(const std::string& cluster_name, const std::string& node_name,
                                config::AdminState state, bool share) {
  const auto current = snapshot();
  auto it = current->clusters.find(cluster_name);
  if (it == current->clusters.end()) return false;
  const std::int32_t index = it->second->find(node_name);
  if (index < 0) return false;
  const auto& node = it->second->nodes()[static_cast<std::uint32_t>(index)];
  const auto previous = node.runtime->admin_state.exchange(state);
  if (previous != state) {
    spdlog::info("node {}/{}: {} -> {}{}", cluster_name, node_name, config::to_string(previous),
                 config::to_string(state), share ? "" : " (set by a twin)");
    // Back in service: slow start, if configured, ramps its share up.
    if (state == config::AdminState::available) {
      it->second->restart_ramp(static_cast<std::uint32_t>(index));
    }
  }
  if (store_) {
    store_->enqueue(state::PutAdminState{cluster_name, node_name,
                                            std::string(config::to_string(state))});
  }
  if (state == config::AdminState::offline) close_node_sessions(node.runtime.get());
  if (share && twins_) twins_->publish_node_state(cluster_name, node_name, state);
  return true;
}

std::optional<config::AdminState> Runtime::node_state(const std::string& cluster_name,
                                                      const std::string& node_name) const {
  const auto current = snapshot();
  const auto it = current->clusters.find(cluster_name);
  if (it == current->clusters.end()) return std::nullopt;
  const std::int32_t index = it->second->find(node_name);
  if (index < 0) return std::nullopt;
  return it->second->nodes()[static_cast<std::uint32_t>(index)].runtime->admin_state.load(
      std::memory_order_relaxed);
}

}  // namespace pb::control
