#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
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
  // From now on, new entries are nodes added by a reload: they begin their slow start.
  void mark_started() {
    std::lock_guard lock(mutex_);
    started_ = true;
  }
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
  bool started_ = false;  // guarded by mutex_
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

// A cluster as the current configuration describes it: its nodes, one algorithm instance shared
// by every worker thread (so that the sequence is that of one balancer), and the node-choice
// rules (eligibility, tiers, fall-over chains, overflow, last resort). Immutable after
// construction except for the algorithm state, which is touched only under pick_mutex_.
class Cluster {
 public:
  // `workers` (and choose()'s `worker`) are kept for the callers; every worker shares one
  // algorithm, so neither changes anything.
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
  // When no eligible node is left, the unavailable ones (failed client connects, not failed
  // checks) are tried as a last resort, least recently failed first: a client connection is a
  // probe too, and on_connected() brings the node back at once.
  // On success the node's slot is taken (active + 1) and its index returned; the caller must
  // call release() exactly once for it. Returns -1 when no node can take the connection.
  std::int32_t choose(unsigned worker, const boost::asio::ip::address& client, TriedSet& tried,
                      std::int32_t preferred = -1);
  // Gives back the slot taken by choose() (connection failed or ended).
  void release(std::uint32_t node);

  // True when the node can take a new connection now: available (operator and agent), up, not
  // down by checks or agent, below max_connections.
  bool eligible(std::uint32_t node) const;

  // The node's load factor as the algorithms use it now: configured x agent percent x slow-start
  // ramp (10% to 100% over slow_start after the node became eligible again).
  double effective_load_factor(std::uint32_t node, std::int64_t now_ns) const;

  // Result of an active health check ([cluster.health]) of the node: counts passes and
  // failures in a row; `fall` failures mark it down, `rise` passes bring it back (also from a
  // failed client connect). `detail` says what came back, for the log line of a transition.
  void on_check(std::uint32_t node, CheckResult result, std::string_view detail);

  // Records that the node became eligible again now (slow start begins), e.g. after an operator
  // set it available.
  void restart_ramp(std::uint32_t node);

  // Outcome of a connect attempt: success records latency and marks the node up; failure
  // counts the reason and marks it unavailable until the next probe (now + retry_interval).
  void on_connected(std::uint32_t node, std::chrono::nanoseconds connect_time);
  void on_failed(std::uint32_t node, FailureReason reason);
  // A background probe connected (mark_up) or failed (schedules the next probe).
  void on_probe(std::uint32_t node, bool ok);

 private:
  std::int32_t follow_fallover(std::uint32_t from, const TriedSet& tried) const;
  bool try_acquire(std::uint32_t node);
  // The untried node that failed least recently among those a client may still try.
  std::int32_t last_resort(const TriedSet& tried) const;
  // Step (b) of choose(): the algorithm over the lowest tier with an eligible untried node.
  std::int32_t pick_by_algorithm(const boost::asio::ip::address& client, const TriedSet& tried);
  void mark_up(std::uint32_t node);
  void mark_unavailable(std::uint32_t node, FailureReason reason);

  std::string name_;
  const NodeRegistry* registry_;
  config::ClusterConfig config_;
  std::vector<Node> nodes_;
  // One algorithm for all workers, with its candidate and load-factor buffers: a pick is a short
  // critical section without allocation.
  std::mutex pick_mutex_;
  std::unique_ptr<Algorithm> algorithm_;
  std::vector<std::uint32_t> candidates_;
  std::vector<double> load_factors_;
  bool dynamic_load_factors_ = false;  // agent or slow start configured
};

}  // namespace pb::balance
