#include "protobalance/net/session.hpp"

#include <chrono>

#include <spdlog/spdlog.h>

#include "protobalance/net/connect.hpp"
#include "protobalance/net/relay.hpp"

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

std::string_view to_string(RejectReason reason) {
  switch (reason) {
    case RejectReason::no_node: return "no_node";
    case RejectReason::descriptors: return "descriptors";
  }
  return "unknown";
}

namespace {

void count_reject(const Route& route, RejectReason reason) {
  route.stats->rejected[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
}

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
// sockets. A connected node socket is non-blocking already (Asio's async_connect made it so);
// an accepted client socket is not. Failures here mean the peer is already gone, which the
// relay will notice.
void prepare(tcp::socket& socket, bool make_non_blocking) {
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  if (make_non_blocking) socket.non_blocking(true, ignored);
}

// Keeps the worker's and the listener's counts of live sessions right on every exit path.
struct SessionCount {
  SessionCount(Worker& w, ListenerStats& s) : worker(w), stats(s) {
    worker.session_started();
    stats.connections.fetch_add(1, std::memory_order_relaxed);
    stats.active.fetch_add(1, std::memory_order_relaxed);
  }
  ~SessionCount() {
    stats.active.fetch_sub(1, std::memory_order_relaxed);
    worker.session_ended();
  }
  SessionCount(const SessionCount&) = delete;
  SessionCount& operator=(const SessionCount&) = delete;
  Worker& worker;
  ListenerStats& stats;
};

// Records which node served an affine client. The entry moves to the serving node unless its
// own node is only passing out of reach (unavailable or full): then the client goes back to it
// once it is back. A draining, offline or removed node loses its clients for good.
void record_affinity(const Route& route, const balance::Cluster& cluster,
                     const affinity::ClientKey& key, const std::optional<std::string>& recorded,
                     std::int32_t affine, std::uint32_t served) {
  auto& stats = *route.affinity_stats;
  const auto now = std::chrono::system_clock::now();
  if (!recorded) {
    stats.miss.fetch_add(1, std::memory_order_relaxed);
  } else if (affine == static_cast<std::int32_t>(served)) {
    stats.hit.fetch_add(1, std::memory_order_relaxed);
  } else if (affine >= 0 &&
             cluster.nodes()[static_cast<std::uint32_t>(affine)].runtime->admin_state.load(
                 std::memory_order_relaxed) == config::AdminState::available) {
    // Transient: keep the entry as it is (its last_seen is refreshed by the next connection
    // the node itself serves).
    stats.hit.fetch_add(1, std::memory_order_relaxed);
    return;
  } else {
    stats.moved.fetch_add(1, std::memory_order_relaxed);
  }
  route.affinity->record(cluster.name(), key, cluster.nodes()[served].name, now);
}

// Fills the connection's access-log record as the session goes and submits it when the session
// ends, whichever way. Does nothing without an access log.
class AccessLogEntry {
 public:
  explicit AccessLogEntry(const Route& route) : sink_(route.access_log) {
    if (sink_ == nullptr) return;
    started_ = std::chrono::steady_clock::now();
    record_.listener = route.listener;
    record_.cluster = route.cluster->name();
  }
  AccessLogEntry(const AccessLogEntry&) = delete;
  AccessLogEntry& operator=(const AccessLogEntry&) = delete;
  ~AccessLogEntry() {
    if (sink_ == nullptr) return;
    record_.end_time = std::chrono::system_clock::now();
    record_.duration = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started_);
    sink_->submit(std::move(record_));
  }

  bool enabled() const { return sink_ != nullptr; }
  AccessRecord& record() { return record_; }

 private:
  AccessLogSink* sink_;
  std::chrono::steady_clock::time_point started_;
  AccessRecord record_;
};

std::string_view outcome(RelayEnd end, const SessionEntry& entry) {
  if (entry.idle_expired) return "idle_timeout";
  if (entry.killed) return "closed_by_operator";  // node set offline, or the stop deadline
  switch (end) {
    case RelayEnd::finished: return "finished";
    case RelayEnd::client_error: return "client_error";
    case RelayEnd::node_error: return "node_error";
    case RelayEnd::node_closed_early: return "node_closed_early";
    case RelayEnd::closed: return "closed";
  }
  return "unknown";
}

}  // namespace

asio::awaitable<void> run_session(Worker& worker, std::shared_ptr<const Route> route,
                                  tcp::socket client) {
  SessionCount count(worker, *route->stats);
  AccessLogEntry log_entry(*route);
  balance::Cluster& cluster = *route->cluster;
  const auto& cfg = cluster.config();

  SessionEntry entry;
  entry.client = &client;
  entry.idle_ticks = worker.ticks_for(cfg.idle_timeout);
  worker.track(entry);

  boost::system::error_code ec;
  const tcp::endpoint peer = client.remote_endpoint(ec);
  if (ec) {
    if (log_entry.enabled()) log_entry.record().outcome = "client_gone";
    co_return;  // reset before we got to it
  }
  prepare(client, true);
  if (log_entry.enabled()) {
    log_entry.record().client_address = peer.address();
    log_entry.record().client_port = peer.port();
  }

  // Affinity: the client's recorded node, if any, is preferred (then its fall-over chain).
  const auto& affinity_cfg = cfg.affinity;
  const bool use_affinity = affinity_cfg.enabled && route->affinity != nullptr;
  affinity::ClientKey client_key;
  std::optional<std::string> recorded;
  std::int32_t affine = -1;  // the recorded node's index (-1: none, or no longer configured)
  if (use_affinity) {
    client_key = affinity::make_key(peer.address(), affinity_cfg.prefix_v4, affinity_cfg.prefix_v6);
    recorded = route->affinity->lookup(cluster.name(), client_key, std::chrono::system_clock::now(),
                                       affinity_cfg.ttl);
    if (recorded) affine = cluster.find(*recorded);
  }
  std::int32_t preferred = affine;

  balance::TriedSet tried(cluster.nodes().size());
  for (;;) {
    const std::int32_t chosen = cluster.choose(worker.index(), peer.address(), tried, preferred);
    if (chosen < 0) {
      if (spdlog::should_log(spdlog::level::debug)) {  // to_string() allocates: only when logged
        spdlog::debug("{}: no node of cluster {} can take client {}", route->listener,
                      cluster.name(), peer.address().to_string());
      }
      count_reject(*route, RejectReason::no_node);
      if (log_entry.enabled()) log_entry.record().outcome = "no_node";
      co_return;  // closing the client promptly is the only honest answer
    }
    const auto index = static_cast<std::uint32_t>(chosen);
    const balance::Node& node = cluster.nodes()[index];

    tcp::socket upstream(worker.context());
    // So that a stop, or the node being taken offline, also cancels the connect.
    entry.node = &upstream;
    entry.node_runtime = node.runtime.get();
    const auto started = std::chrono::steady_clock::now();
    ec = co_await connect_with_timeout(upstream, node.endpoint, cfg.connect_timeout);
    entry.node = nullptr;
    entry.node_runtime = nullptr;
    if (log_entry.enabled()) ++log_entry.record().attempts;
    if (!client.is_open()) {  // stopped or killed while connecting
      cluster.release(index);
      if (log_entry.enabled()) log_entry.record().outcome = "closed_by_operator";
      co_return;
    }
    if (is_local_shortage(ec)) {
      // Our own shortage, not the node's fault: do not mark it unavailable.
      cluster.release(index);
      count_reject(*route, RejectReason::descriptors);
      if (log_entry.enabled()) log_entry.record().outcome = "descriptors";
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
      node.runtime->failovers.fetch_add(1, std::memory_order_relaxed);
      if (log_entry.enabled()) ++log_entry.record().fallovers;
      preferred = chosen;  // its fall-over chain comes next
      continue;
    }
    const auto connect_time = std::chrono::steady_clock::now() - started;
    cluster.on_connected(index, connect_time);
    prepare(upstream, false);
    if (use_affinity) record_affinity(*route, cluster, client_key, recorded, affine, index);

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
      node.runtime->failovers.fetch_add(1, std::memory_order_relaxed);
      if (log_entry.enabled()) ++log_entry.record().fallovers;
      preferred = chosen;  // its fall-over chain comes next
      continue;
    }
    if (log_entry.enabled()) {
      auto& record = log_entry.record();
      record.node = node.name;
      record.connect_time = std::chrono::duration_cast<std::chrono::microseconds>(connect_time);
      record.bytes_to_node = result.bytes_to_node;
      record.bytes_to_client = result.bytes_to_client;
      record.outcome = outcome(result.end, entry);
    }
    if (spdlog::should_log(spdlog::level::debug)) {  // to_string() allocates: only when logged
      spdlog::debug("{}: {}:{} via {}/{}: {} bytes to node, {} to client, {}", route->listener,
                    peer.address().to_string(), peer.port(), cluster.name(), node.name,
                    result.bytes_to_node, result.bytes_to_client, to_string(result.end));
    }
    co_return;
  }
}

}  // namespace pb::net
