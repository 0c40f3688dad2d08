#pragma once

// Pieces shared by the net unit tests: loopback socket pairs, a worker task runner, routes to
// in-process backends.

#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <gtest/gtest.h>

#include "protobalance/balance/cluster.hpp"
#include "protobalance/net/io.hpp"
#include "protobalance/net/session.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::net::testing {

using namespace std::chrono_literals;

// A loopback TCP connection: the end a connection would hold (non-blocking), and its peer.
struct Link {
  Link() : peer(io) {
    boost::asio::ip::tcp::acceptor acceptor(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    boost::asio::ip::tcp::socket connecting(io);
    connecting.connect(acceptor.local_endpoint());
    acceptor.accept(peer);
    connecting.non_blocking(true);
    end = Fd(connecting.release());
    // Reads by the test are bounded: a blocking read gives up after 5 s.
    const timeval limit{5, 0};
    ::setsockopt(peer.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  }
  boost::asio::io_context io;
  Fd end;
  boost::asio::ip::tcp::socket peer;
};

// Runs `f` on the worker's thread and waits for it (at most 5 s).
template <typename F>
auto on_worker(Worker& worker, F f) {
  std::packaged_task<decltype(f())()> task(std::move(f));
  auto result = task.get_future();
  worker.post([&task] { task(); });
  if (result.wait_for(5s) != std::future_status::ready) {
    ADD_FAILURE() << "the worker did not run the task within 5 s";
    std::abort();  // the posted task still refers to this frame
  }
  return result.get();
}

// Polls `condition` every 5 ms until it holds or `limit` passes; returns whether it held.
template <typename F>
bool eventually(F condition, std::chrono::milliseconds limit = 5000ms) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

struct NodeSpec {
  NodeSpec(std::string n, std::string a, config::ProxyProtocol p = config::ProxyProtocol::off,
           std::string f = {}, std::uint32_t t = 1)
      : name(std::move(n)), address(std::move(a)), proxy(p), fallover(std::move(f)), tier(t) {}
  std::string name;
  std::string address;  // "127.0.0.1:PORT"
  config::ProxyProtocol proxy = config::ProxyProtocol::off;
  std::string fallover;
  std::uint32_t tier = 1;
};

inline boost::asio::ip::tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (host.front() == '[') host = host.substr(1, host.size() - 2);
  return {boost::asio::ip::make_address(host),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

// A route of listener "test" to a cluster "web" of `nodes`, with its own stats.
struct RouteFixture {
  explicit RouteFixture(const std::vector<NodeSpec>& nodes, std::string algorithm = "round_robin",
                        std::chrono::milliseconds idle_timeout = 0ms) {
    config::ClusterConfig cfg;
    cfg.name = "web";
    cfg.algorithm = std::move(algorithm);
    cfg.connect_timeout = 2000ms;
    cfg.idle_timeout = idle_timeout;
    for (const auto& spec : nodes) {
      config::NodeConfig node;
      node.name = spec.name;
      node.address = spec.address;
      node.endpoint = endpoint_of(spec.address);
      node.proxy_protocol = spec.proxy;
      node.fallover = spec.fallover;
      node.tier = spec.tier;
      cfg.nodes.push_back(node);
    }
    cluster = std::make_shared<balance::Cluster>(cfg, registry, 1, 1);
    stats = std::make_shared<ListenerStats>();
  }
  std::shared_ptr<const Route> route(std::vector<std::shared_ptr<const ClientPhase>> phases = {}) {
    return std::make_shared<const Route>(
        Route{"test", cluster, stats, nullptr, std::make_shared<AffinityStats>(), nullptr,
              std::move(phases), {}});
  }
  std::uint64_t rejected(RejectReason reason) const {
    return stats->rejected[static_cast<std::size_t>(reason)].load();
  }
  balance::NodeRegistry registry;
  std::shared_ptr<balance::Cluster> cluster;
  std::shared_ptr<ListenerStats> stats;
};

}  // namespace pb::net::testing
