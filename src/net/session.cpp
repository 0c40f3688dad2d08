#include "protobalance/net/session.hpp"

#include <chrono>

#include <spdlog/spdlog.h>

#include "protobalance/net/connect.hpp"
#include "protobalance/net/relay.hpp"

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

std::string_view to_string(RelayEnd end) {
  switch (end) {
    case RelayEnd::finished: return "finished";
    case RelayEnd::node_closed_early: return "node closed before data";
    case RelayEnd::client_error: return "client error";
    case RelayEnd::node_error: return "node error";
    case RelayEnd::closed: return "closed";
  }
  return "?";
}

// Low latency for interactive protocols, and the raw send/recv of the relay need non-blocking
// sockets. Failures here mean the peer is already gone, which the relay will notice.
void prepare(tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  socket.non_blocking(true, ignored);
}

// Keeps the worker's count of live sessions right on every exit path.
struct SessionCount {
  explicit SessionCount(Worker& w) : worker(w) { worker.session_started(); }
  ~SessionCount() { worker.session_ended(); }
  SessionCount(const SessionCount&) = delete;
  SessionCount& operator=(const SessionCount&) = delete;
  Worker& worker;
};

}  // namespace

asio::awaitable<void> run_session(Worker& worker, std::shared_ptr<const Route> route,
                                  tcp::socket client) {
  SessionCount count(worker);
  balance::Cluster& cluster = *route->cluster;
  const auto& cfg = cluster.config();

  SessionEntry entry;
  entry.client = &client;
  entry.idle_ticks = worker.ticks_for(cfg.idle_timeout);
  worker.track(entry);

  boost::system::error_code ec;
  const tcp::endpoint peer = client.remote_endpoint(ec);
  if (ec) co_return;  // reset before we got to it
  prepare(client);

  balance::TriedSet tried(cluster.nodes().size());
  for (;;) {
    const std::int32_t chosen = cluster.choose(worker.index(), peer.address(), tried);
    if (chosen < 0) {
      spdlog::debug("{}: no node of cluster {} can take client {}", route->listener,
                    cluster.name(), peer.address().to_string());
      co_return;  // closing the client promptly is the only honest answer
    }
    const auto index = static_cast<std::uint32_t>(chosen);
    const balance::Node& node = cluster.nodes()[index];

    tcp::socket upstream(worker.context());
    entry.node = &upstream;  // so that a stop or kill also cancels the connect
    const auto started = std::chrono::steady_clock::now();
    ec = co_await connect_with_timeout(upstream, node.endpoint, cfg.connect_timeout);
    entry.node = nullptr;
    if (!client.is_open()) {  // stopped or killed while connecting
      cluster.release(index);
      co_return;
    }
    if (is_local_shortage(ec)) {
      // Our own shortage, not the node's fault: do not mark it unavailable.
      cluster.release(index);
      if (!worker.warned_descriptors) {
        worker.warned_descriptors = true;
        spdlog::warn("{}: out of descriptors ({}); closing clients until some are free",
                     route->listener, ec.message());
      }
      co_return;
    }
    if (ec) {
      const auto reason = classify_connect_error(ec);
      spdlog::debug("{}: connect to {}/{} failed ({}); trying the next node", route->listener,
                    cluster.name(), node.name, balance::to_string(reason));
      cluster.on_failed(index, reason);
      cluster.release(index);
      continue;
    }
    cluster.on_connected(index, std::chrono::steady_clock::now() - started);
    prepare(upstream);

    entry.node = &upstream;
    entry.node_runtime = node.runtime.get();
    const RelayResult result = co_await relay(client, upstream, worker, entry, true);
    entry.node = nullptr;
    entry.node_runtime = nullptr;

    node.runtime->bytes_to_node.fetch_add(result.bytes_to_node, std::memory_order_relaxed);
    node.runtime->bytes_to_client.fetch_add(result.bytes_to_client, std::memory_order_relaxed);
    cluster.release(index);
    if (result.end == RelayEnd::node_closed_early) {
      spdlog::debug("{}: {}/{} closed before any data; trying the next node", route->listener,
                    cluster.name(), node.name);
      cluster.on_failed(index, balance::FailureReason::closed);
      continue;
    }
    spdlog::debug("{}: {}:{} via {}/{}: {} bytes to node, {} to client, {}", route->listener,
                  peer.address().to_string(), peer.port(), cluster.name(), node.name,
                  result.bytes_to_node, result.bytes_to_client, to_string(result.end));
    co_return;
  }
}

}  // namespace pb::net
