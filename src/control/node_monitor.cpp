#include "protobalance/control/runtime.hpp"

#include <algorithm>
#include <exception>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/balance/agent.hpp"
#include "protobalance/balance/health_check.hpp"
#include "protobalance/balance/steady_clock.hpp"
#include "protobalance/net/connect.hpp"

namespace pb::control {

namespace asio = boost::asio;

// The node monitor: the prober of unavailable nodes and, per node, the [cluster.health] check
// loop and the [cluster.agent] loop. All run on the monitor's own thread and io_context
// (monitor_), never on the control thread (a probe must not wait for a reload or an admin
// request) nor on a worker (a worker's loop has no Asio reactor: worker.cpp). What they touch
// is safe from any thread: the snapshot (under its mutex), the clusters' on_probe/on_check and
// the node runtimes' atomics (which workers read while choosing), and the workers only through
// Worker::post (close_node_sessions).

// Probes unavailable nodes with a plain TCP connect once their retry_interval has passed.
void Runtime::start_prober() {
  asio::co_spawn(monitor_, probe_loop(), asio::detached);
  monitor_thread_ = std::thread([this] {
    try {
      monitor_.run();
    } catch (const std::exception& e) {
      spdlog::critical("node monitor stopped by an unexpected error: {}", e.what());
      std::terminate();
    }
  });
}

void Runtime::stop_monitor() {
  monitor_guard_.reset();
  monitor_.stop();
  if (monitor_thread_.joinable()) monitor_thread_.join();
}

asio::awaitable<void> Runtime::probe_loop() {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    const std::int64_t now = balance::now_ns();
    const auto current = snapshot();
    for (const auto& [name, cluster] : current->clusters) {
      const auto& cfg = cluster->config();
      start_node_loops(cluster);
      if (cfg.health) continue;  // its checks bring nodes back, not plain probes
      for (std::uint32_t i = 0; i < cluster->nodes().size(); ++i) {
        auto& runtime = *cluster->nodes()[i].runtime;
        if (runtime.up() || runtime.next_probe_ns.load(std::memory_order_relaxed) > now) continue;
        // Not again until this probe has had its chance to finish.
        runtime.next_probe_ns.store(
            now + std::chrono::nanoseconds(cfg.retry_interval + cfg.connect_timeout).count(),
            std::memory_order_relaxed);
        asio::co_spawn(
            monitor_,
            [cluster, i]() -> asio::awaitable<void> {
              balance::CheckTarget target;
              target.endpoint = cluster->nodes()[i].endpoint;
              target.timeout = cluster->config().connect_timeout;
              // A node that expects a PROXY header gets one that says "a probe, no client".
              target.preamble =
                  std::string(net::local_header(cluster->config().nodes[i].proxy_protocol));
              const auto outcome = co_await balance::run_check(std::move(target));
              cluster->on_probe(i, outcome.result == balance::CheckResult::ok);
            },
            asio::detached);
      }
    }
  }
}

void Runtime::start_node_loops(const std::shared_ptr<balance::Cluster>& cluster) {
  const auto& cfg = cluster->config();
  if (!cfg.health && !cfg.agent) return;
  const auto& nodes = cluster->nodes();
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto& node = nodes[i];
    // A loop that ended by an exception logs it; its flag stays set so that it is not
    // restarted in a tight cycle.
    const auto log_escape = [](std::exception_ptr error) {
      if (!error) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        spdlog::error("node check loop ended: {}", e.what());
      }
    };
    if (cfg.health && !node.runtime->checker_running.load() &&
        !node.runtime->checker_running.exchange(true)) {
      asio::co_spawn(monitor_,
                     check_loop(cluster->name(), node.name, node.runtime,
                                balance::check_offset(i, nodes.size(), cfg.health->interval)),
                     log_escape);
    }
    if (cfg.agent && !node.runtime->agent_running.load() &&
        !node.runtime->agent_running.exchange(true)) {
      asio::co_spawn(monitor_,
                     agent_loop(cluster->name(), node.name, node.runtime,
                                balance::check_offset(i, nodes.size(), cfg.agent->interval)),
                     log_escape);
    }
  }
}

asio::awaitable<void> Runtime::check_loop(std::string cluster_name, std::string node_name,
                                          std::shared_ptr<balance::NodeRuntime> runtime,
                                          std::chrono::milliseconds delay) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(delay);
    if (auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable)); ec) break;
    // Looked up every round: a reload may have changed the node, the checks, or removed them.
    const auto current = snapshot();
    const auto found = current->clusters.find(cluster_name);
    if (found == current->clusters.end() || !found->second->config().health) break;
    const auto cluster = found->second;
    const std::int32_t index = cluster->find(node_name);
    if (index < 0) break;
    const auto& node = cluster->nodes()[static_cast<std::uint32_t>(index)];
    if (node.runtime != runtime) break;
    const auto& cfg = cluster->config();
    const auto& health = *cfg.health;

    balance::CheckTarget target;
    target.endpoint = node.endpoint;
    if (health.port != 0) target.endpoint.port(health.port);
    target.timeout = std::min(health.timeout.value_or(cfg.connect_timeout), health.interval);
    // A node that expects a PROXY header gets one that says "a check, no client".
    const auto version = cfg.nodes[static_cast<std::uint32_t>(index)].proxy_protocol;
    target.preamble = std::string(net::local_header(version));
    target.send = health.send;
    target.expect = health.expect;
    const auto outcome = co_await balance::run_check(std::move(target));
    cluster->on_check(static_cast<std::uint32_t>(index), outcome.result, outcome.detail);
    delay = health.interval;
  }
  // Checks switched off by a reload (or the node removed): their verdict no longer holds.
  runtime->check_down.store(false);
  runtime->checks_passed_in_row.store(0);
  runtime->checks_failed_in_row.store(0);
  runtime->checker_running.store(false);
}

asio::awaitable<void> Runtime::agent_loop(std::string cluster_name, std::string node_name,
                                          std::shared_ptr<balance::NodeRuntime> runtime,
                                          std::chrono::milliseconds delay) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::string problem;  // the last failure logged, so that each change is logged once
  for (;;) {
    timer.expires_after(delay);
    if (auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable)); ec) break;
    const auto current = snapshot();
    const auto found = current->clusters.find(cluster_name);
    if (found == current->clusters.end() || !found->second->config().agent) break;
    const auto cluster = found->second;
    const std::int32_t index = cluster->find(node_name);
    if (index < 0) break;
    const auto& node = cluster->nodes()[static_cast<std::uint32_t>(index)];
    if (node.runtime != runtime) break;
    const auto& agent = *cluster->config().agent;
    delay = agent.interval;

    auto endpoint = node.endpoint;
    endpoint.port(agent.port);
    const auto line = co_await balance::read_agent_line(endpoint, agent.timeout);
    std::string failure;
    balance::AgentReply reply;
    if (line.result != balance::CheckResult::ok) {
      failure = fmt::format("no reply ({}{}{})", balance::to_string(line.result),
                            line.detail.empty() ? "" : ": ", line.detail);
    } else {
      reply = balance::parse_agent_reply(line.line);
      if (!reply.error.empty()) {
        failure = fmt::format("garbled reply \"{}\": {}", balance::printable(line.line),
                              reply.error);
      }
    }
    if (!failure.empty()) {
      // The last good values stay for three intervals (see min_load.cpp); the states stay.
      if (failure != problem) {
        spdlog::warn("node {}/{}: agent: {}", cluster_name, node_name, failure);
        problem = failure;
      }
      continue;
    }
    if (!problem.empty()) {
      spdlog::info("node {}/{}: agent answers again: \"{}\"", cluster_name, node_name,
                   balance::printable(line.line));
      problem.clear();
    }
    const auto node_index = static_cast<std::uint32_t>(index);
    if (reply.up) {
      const bool was_down = runtime->agent_down.exchange(!*reply.up);
      if (was_down != !*reply.up) {
        spdlog::info("node {}/{}: agent says {}", cluster_name, node_name, *reply.up ? "up" : "down");
        if (*reply.up) cluster->restart_ramp(node_index);
      }
    }
    if (reply.state) {
      const auto previous = runtime->agent_state.exchange(*reply.state);
      if (previous != *reply.state) {
        spdlog::info("node {}/{}: agent state {} -> {}", cluster_name, node_name,
                     config::to_string(previous), config::to_string(*reply.state));
        if (*reply.state == config::AdminState::available) cluster->restart_ramp(node_index);
        if (*reply.state == config::AdminState::offline) close_node_sessions(runtime.get());
      }
    }
    if (reply.weight_percent) runtime->agent_weight_percent.store(*reply.weight_percent);
    {
      std::lock_guard lock(runtime->agent_mutex);
      runtime->agent_values = std::move(reply.values);
      runtime->agent_values_ns = balance::now_ns();
    }
  }
  // The agent switched off by a reload (or the node removed): what it said no longer holds.
  runtime->agent_down.store(false);
  runtime->agent_state.store(config::AdminState::available);
  runtime->agent_weight_percent.store(100);
  {
    std::lock_guard lock(runtime->agent_mutex);
    runtime->agent_values.clear();
    runtime->agent_values_ns = 0;
  }
  runtime->agent_running.store(false);
}

}  // namespace pb::control
