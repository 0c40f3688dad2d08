#include "protobalance/net/session.hpp"

#include <chrono>

#include <boost/asio/error.hpp>
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

// The client's affinity entry as the session found it at its start.
struct AffinityLookup {
  bool enabled = false;     // the cluster keeps affinity and the process has a map
  bool had_record = false;  // an entry existed (its node may be gone since)
  std::int32_t affine = -1;  // the entry's node index (-1: none, or no longer configured)
  affinity::ClientKey key;
};

AffinityLookup look_up_affinity(const Route& route, const balance::Cluster& cluster,
                                const tcp::endpoint& peer) {
  AffinityLookup found;
  const auto& cfg = cluster.config().affinity;
  found.enabled = cfg.enabled && route.affinity != nullptr;
  if (!found.enabled) return found;
  found.key = affinity::make_key(peer.address(), cfg.prefix_v4, cfg.prefix_v6);
  const auto recorded =
      route.affinity->lookup(cluster.name(), found.key, std::chrono::system_clock::now(), cfg.ttl);
  found.had_record = recorded.has_value();
  if (recorded) found.affine = cluster.find(*recorded);
  return found;
}

// Records which node served an affine client. The entry moves to the serving node unless its
// own node is only passing out of reach (unavailable or full): then the client goes back to it
// once it is back. A draining, offline or removed node loses its clients for good.
void record_affinity(const Route& route, const balance::Cluster& cluster,
                     const AffinityLookup& found, std::uint32_t served) {
  auto& stats = *route.affinity_stats;
  const auto now = std::chrono::system_clock::now();
  const std::int32_t affine = found.affine;
  if (!found.had_record) {
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
  route.affinity->record(cluster.name(), found.key, cluster.nodes()[served].name, now);
}

// Fills the connection's access-log record as the session goes and submits it when the session
// ends, whichever way. Does nothing without an access log; the record lives on the heap only
// when there is one, so a session's frame stays small.
class AccessLogEntry {
 public:
  AccessLogEntry(const Route& route, const tcp::endpoint& peer) : sink_(route.access_log) {
    if (sink_ == nullptr) return;
    started_ = std::chrono::steady_clock::now();
    record_ = std::make_unique<AccessRecord>();
    record_->listener = route.listener;
    record_->cluster = route.cluster->name();
    record_->client_address = peer.address();
    record_->client_port = peer.port();
  }
  AccessLogEntry(const AccessLogEntry&) = delete;
  AccessLogEntry& operator=(const AccessLogEntry&) = delete;
  ~AccessLogEntry() {
    if (sink_ == nullptr) return;
    record_->end_time = std::chrono::system_clock::now();
    record_->duration = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started_);
    sink_->submit(std::move(*record_));
  }

  bool enabled() const { return sink_ != nullptr; }
  AccessRecord& record() { return *record_; }

 private:
  AccessLogSink* sink_;
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<AccessRecord> record_;
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

// What to do after a connect attempt.
enum class AfterConnect : std::uint8_t { relay, next_node, give_up };

// Accounts for one finished connect attempt. Kept out of run_session so that its temporaries
// (log arguments, error texts) do not live in the session's coroutine frame.
AfterConnect after_connect(Worker& worker, const Route& route, const Fd& client,
                           std::uint32_t index, const boost::system::error_code& ec,
                           AccessLogEntry& log_entry) {
  balance::Cluster& cluster = *route.cluster;
  const balance::Node& node = cluster.nodes()[index];
  if (log_entry.enabled()) ++log_entry.record().attempts;
  // Stopped or killed (SessionEntry::close) while connecting, or between two nodes.
  if (ec == asio::error::operation_aborted || !client.is_open()) {
    cluster.release(index);
    if (log_entry.enabled()) log_entry.record().outcome = "closed_by_operator";
    return AfterConnect::give_up;
  }
  if (is_local_shortage(ec)) {
    // Our own shortage, not the node's fault: do not mark it unavailable.
    cluster.release(index);
    count_reject(route, RejectReason::descriptors);
    if (log_entry.enabled()) log_entry.record().outcome = "descriptors";
    if (!worker.warned_descriptors) {
      worker.warned_descriptors = true;
      spdlog::warn("{}: out of descriptors ({}); closing clients until some are free",
                   route.listener, ec.message());
    }
    return AfterConnect::give_up;
  }
  if (ec) {
    const auto reason = classify_connect_error(ec);
    spdlog::debug("{}: connect to {}/{} failed ({}); trying the next node", route.listener,
                  cluster.name(), node.name, balance::to_string(reason));
    cluster.on_failed(index, reason);
    cluster.release(index);
    node.runtime->failovers.fetch_add(1, std::memory_order_relaxed);
    if (log_entry.enabled()) ++log_entry.record().fallovers;
    return AfterConnect::next_node;
  }
  return AfterConnect::relay;
}

// Accounts for a finished relay; returns true when the node closed before any byte moved and
// the client should be offered to the next node.
bool after_relay(const Route& route, std::uint32_t index, const RelayResult& result,
                 const SessionEntry& entry, std::chrono::steady_clock::duration connect_time,
                 const tcp::endpoint& peer, AccessLogEntry& log_entry) {
  balance::Cluster& cluster = *route.cluster;
  const balance::Node& node = cluster.nodes()[index];
  node.runtime->bytes_to_node.fetch_add(result.bytes_to_node, std::memory_order_relaxed);
  node.runtime->bytes_to_client.fetch_add(result.bytes_to_client, std::memory_order_relaxed);
  cluster.release(index);
  if (result.end == RelayEnd::node_closed_early) {
    spdlog::debug("{}: {}/{} closed before any data; trying the next node", route.listener,
                  cluster.name(), node.name);
    cluster.on_failed(index, balance::FailureReason::closed);
    node.runtime->failovers.fetch_add(1, std::memory_order_relaxed);
    if (log_entry.enabled()) ++log_entry.record().fallovers;
    return true;
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
    spdlog::debug("{}: {}:{} via {}/{}: {} bytes to node, {} to client, {}", route.listener,
                  peer.address().to_string(), peer.port(), cluster.name(), node.name,
                  result.bytes_to_node, result.bytes_to_client, to_string(result.end));
  }
  return false;
}

void reject_no_node(const Route& route, const tcp::endpoint& peer, AccessLogEntry& log_entry) {
  if (spdlog::should_log(spdlog::level::debug)) {  // to_string() allocates: only when logged
    spdlog::debug("{}: no node of cluster {} can take client {}", route.listener,
                  route.cluster->name(), peer.address().to_string());
  }
  count_reject(route, RejectReason::no_node);
  if (log_entry.enabled()) log_entry.record().outcome = "no_node";
}

}  // namespace

// The coroutine frame of a session lives as long as its connection, idle or not, so it holds
// only what spans a suspension; the accounting is in the helpers above (see BENCHMARKS.md,
// "Idle connections").
Task<void> run_session(Worker& worker, std::shared_ptr<const Route> route, Fd accepted,
                       tcp::endpoint peer) {
  SessionCount count(worker, *route->stats);
  AccessLogEntry log_entry(*route, peer);
  balance::Cluster& cluster = *route->cluster;

  SessionEntry entry;
  // Declared after `entry`, which holds its registration in the worker's poller, so that it is
  // closed first (a parameter would live until the coroutine frame goes, which may be later).
  Fd client = std::move(accepted);
  entry.client = &client;
  entry.idle_ticks = worker.ticks_for(cluster.config().idle_timeout);
  worker.track(entry);
  client.set_no_delay();

  // Affinity: the client's recorded node, if any, is preferred (then its fall-over chain).
  const AffinityLookup affinity = look_up_affinity(*route, cluster, peer);
  std::int32_t preferred = affinity.affine;
  balance::TriedSet tried(cluster.nodes().size());
  for (;;) {
    const std::int32_t chosen = cluster.choose(worker.index(), peer.address(), tried, preferred);
    if (chosen < 0) {
      reject_no_node(*route, peer, log_entry);
      co_return;  // closing the client promptly is the only honest answer
    }
    preferred = chosen;  // if it fails, its fall-over chain comes next
    const auto index = static_cast<std::uint32_t>(chosen);
    const balance::NodeRuntime* runtime = cluster.nodes()[index].runtime.get();

    Fd upstream;
    // So that a stop, or the node being taken offline, also cancels the connect and the relay.
    entry.node = &upstream;
    entry.node_runtime = runtime;
    const auto started = std::chrono::steady_clock::now();
    const auto ec =
        co_await connect_with_timeout(worker, upstream, entry.node_slot,
                                      cluster.nodes()[index].endpoint,
                                      cluster.config().connect_timeout, &entry);
    const auto step = after_connect(worker, *route, client, index, ec, log_entry);
    if (step == AfterConnect::give_up) co_return;
    if (step == AfterConnect::next_node) continue;
    const auto connect_time = std::chrono::steady_clock::now() - started;
    cluster.on_connected(index, connect_time);
    upstream.set_no_delay();
    if (affinity.enabled) record_affinity(*route, cluster, affinity, index);

    const RelayResult result =
        co_await async_relay(client, upstream, worker, entry, true, use_task);
    entry.node = nullptr;
    entry.node_runtime = nullptr;
    if (!after_relay(*route, index, result, entry, connect_time, peer, log_entry)) co_return;
  }
}

}  // namespace pb::net
