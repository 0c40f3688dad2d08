#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/balance/node.hpp"
#include "protobalance/config/config.hpp"

namespace pb::balance {

// Run-time state of every node ever configured, keyed by (cluster, node) so that it survives
// reloads. Used only when a configuration is applied (not on the hot path), hence the mutex.
class NodeRegistry {
 public:
  // Returns the state for (cluster, node), creating it with `initial` admin state if new.
  std::shared_ptr<NodeRuntime> get(const std::string& cluster, const std::string& node,
                                   AdminState initial);
  // The state for (cluster, node) if it exists, else null.
  std::shared_ptr<NodeRuntime> find(const std::string& cluster, const std::string& node);
  // Drops entries whose (cluster, node) is not in cfg (their live connections keep their own
  // shared_ptr).
  void retain(const config::Config& cfg);

  // Called on every availability transition of a node (up <-> unavailable), from whichever
  // thread saw it; rare, so a std::function is fine. Used to persist the retry state.
  using AvailabilityObserver =
      std::function<void(const std::string& cluster, const std::string& node, const NodeRuntime&)>;
  void set_observer(AvailabilityObserver observer) { observer_ = std::move(observer); }
  const AvailabilityObserver& observer() const { return observer_; }

 private:
  AvailabilityObserver observer_;  // set before any Cluster is built
  std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<NodeRuntime>> nodes_;
};

// The set of nodes already tried for one client connection. No allocation up to 256 nodes.
class TriedSet {
 public:
  explicit TriedSet(std::size_t node_count);
  bool contains(std::uint32_t node) const;
  void insert(std::uint32_t node);

 private:
  std::array<std::uint64_t, 4> inline_{};
  std::vector<std::uint64_t> big_;
};

// A cluster as the current configuration describes it: its nodes, one algorithm instance per
// worker thread, and the node-choice rules (eligibility, tiers, fall-over chains, overflow).
// Immutable after construction except for the per-worker algorithm state, which only its own
// worker touches.
class Cluster {
 public:
  Cluster(const config::ClusterConfig& cfg, NodeRegistry& registry, unsigned workers,
          std::uint64_t seed);

  const std::string& name() const { return name_; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const config::ClusterConfig& config() const { return config_; }
  std::int32_t find(std::string_view node_name) const;  // -1 when absent

  // Chooses the node for the next connection attempt of one client connection, on worker
  // `worker`. `preferred` (-1 = none) is the client's affinity node, or the node whose connect
  // just failed: taken when untried and eligible, else its fall-over chain is followed before
  // the algorithm picks. Nodes in `tried` are skipped; the chosen one is added to it.
  // On success the node's slot is taken (active + 1) and its index returned; the caller must
  // call release() exactly once for it. Returns -1 when no node can take the connection.
  std::int32_t choose(unsigned worker, const boost::asio::ip::address& client, TriedSet& tried,
                      std::int32_t preferred = -1);
  // Gives back the slot taken by choose() (connection failed or ended).
  void release(std::uint32_t node);

  // True when the node can take a new connection now: available, up, below max_connections.
  bool eligible(std::uint32_t node) const;

  // Outcome of a connect attempt: success records latency and marks the node up; failure
  // counts the reason and marks it unavailable until the next probe (now + retry_interval).
  void on_connected(std::uint32_t node, std::chrono::nanoseconds connect_time);
  void on_failed(std::uint32_t node, FailureReason reason);
  // A background probe connected (mark_up) or failed (schedules the next probe).
  void on_probe(std::uint32_t node, bool ok);

 private:
  std::int32_t follow_fallover(std::uint32_t from, const TriedSet& tried) const;
  bool try_acquire(std::uint32_t node);
  // Step (b) of choose(): the algorithm over the lowest tier with an eligible untried node.
  std::int32_t pick_by_algorithm(std::size_t slot, const boost::asio::ip::address& client,
                                 const TriedSet& tried);
  void mark_up(std::uint32_t node);
  void mark_unavailable(std::uint32_t node, FailureReason reason);

  std::string name_;
  const NodeRegistry* registry_;
  config::ClusterConfig config_;
  std::vector<Node> nodes_;
  std::vector<std::unique_ptr<Algorithm>> algorithms_;        // one per worker
  std::vector<std::vector<std::uint32_t>> scratch_;            // one candidate buffer per worker
};

}  // namespace pb::balance
