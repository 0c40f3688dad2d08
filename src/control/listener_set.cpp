#include "protobalance/control/runtime.hpp"

#include <stdexcept>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/config/address.hpp"
#include "protobalance/net/proxy_header_in.hpp"

namespace pb::control {

namespace asio = boost::asio;
using asio::ip::tcp;

// The listener set: one group per listener, an acceptor on each worker bound to the same
// address (SO_REUSEPORT), opened, routed, started and closed by start(), reload() and the stop.


Runtime::ListenerGroup Runtime::open_group(const config::ListenerConfig& cfg) {
  ListenerGroup group;
  group.config = cfg;
  tcp::endpoint endpoint = cfg.endpoint;
  for (auto& worker : workers_) {
    // Opened and bound in the control thread's io_context; the Listener takes it out of it.
    net::Acceptor acceptor(control_);
    try {
      acceptor = net::open_acceptor(control_, endpoint);
    } catch (const boost::system::system_error& e) {
      // Acceptors opened so far close with `group`.
      throw std::runtime_error(fmt::format("listener {}: cannot listen on {}: {}", cfg.name,
                                           cfg.address, e.code().message()));
    }
    // Port 0 is resolved by the first bind; the other workers join that port.
    endpoint = acceptor.local_endpoint();
    group.per_worker.push_back(std::make_shared<net::Listener>(*worker, std::move(acceptor),
                                                               nullptr, accept_stats_));
  }
  group.bound = endpoint;
  return group;
}

void Runtime::route_group(const ListenerGroup& group, const Snapshot& snapshot) {
  const std::string& cluster_name = snapshot.routes.at(group.config.name);
  auto cluster = snapshot.clusters.at(cluster_name);
  std::shared_ptr<net::ListenerStats> stats;
  std::shared_ptr<net::AffinityStats> affinity_stats;
  {
    std::lock_guard lock(snapshot_mutex_);
    stats = listener_stats_.at(group.config.name);
    affinity_stats = affinity_stats_.at(cluster_name);
  }
  // Client phases are const and shared by the listener's routes on every worker.
  std::vector<std::shared_ptr<const net::ClientPhase>> client_phases;
  if (group.config.accept_proxy) {
    client_phases.push_back(std::make_shared<const net::ProxyHeaderIn>(
        group.config.trusted_proxies, group.config.proxy_timeout));
  }
  // Guards run on the client the PROXY header named.
  if (block_list_->current()->applies_to(group.config.name)) {
    client_phases.push_back(
        std::make_shared<const net::BlockCheck>(group.config.name, block_list_));
  }
  for (auto& phase : guards_.phases(group.config)) client_phases.push_back(std::move(phase));
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    // Each worker gets its own Route object: its reference count is then written by that
    // worker only.
    auto route = std::make_shared<const net::Route>(
        net::Route{group.config.name, cluster, stats, affinity_.get(), affinity_stats,
                   options_.access_log, client_phases, sni_routes(group.config, snapshot, stats),
                   twins_.get(), block_list_});
    auto listener = group.per_worker[w];
    if (!listener->route()) {
      listener->set_route(std::move(route));  // not started yet: no worker reads it
    } else {
      workers_[w]->post([listener, route = std::move(route)]() mutable {
        listener->set_route(std::move(route));
      });
    }
  }
}

// The routes a listener's [[listener.route]] entries lead to, in order (one worker's copy).
std::vector<std::shared_ptr<const net::Route>> Runtime::sni_routes(
    const config::ListenerConfig& listener, const Snapshot& snapshot,
    const std::shared_ptr<net::ListenerStats>& stats) {
  std::vector<std::shared_ptr<const net::Route>> routes;
  for (const auto& entry : listener.routes) {
    std::shared_ptr<net::AffinityStats> affinity_stats;
    {
      std::lock_guard lock(snapshot_mutex_);
      affinity_stats = affinity_stats_.at(entry.cluster);
    }
    routes.push_back(std::make_shared<const net::Route>(
        net::Route{listener.name, snapshot.clusters.at(entry.cluster), stats, affinity_.get(),
                   std::move(affinity_stats), options_.access_log, {}, {}, twins_.get()}));
  }
  return routes;
}

void Runtime::start_group(const ListenerGroup& group) {
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    workers_[w]->post([listener = group.per_worker[w]] { listener->start(); });
  }
  spdlog::info("listener {} on {} -> cluster {}", group.config.name,
               config::format_endpoint(group.bound), snapshot()->routes.at(group.config.name));
  std::lock_guard lock(snapshot_mutex_);
  bound_[group.config.name] = group.bound;
}

void Runtime::close_group(const ListenerGroup& group) {
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    workers_[w]->post([listener = group.per_worker[w]] { listener->close(); });
  }
  std::lock_guard lock(snapshot_mutex_);
  bound_.erase(group.config.name);
}

}  // namespace pb::control
