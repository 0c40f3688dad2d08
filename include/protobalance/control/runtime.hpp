#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>

#include "protobalance/affinity/affinity_map.hpp"
#include "protobalance/balance/cluster.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/control/admin_api.hpp"
#include "protobalance/control/status.hpp"
#include "protobalance/control/twins.hpp"
#include "protobalance/net/guards.hpp"
#include "protobalance/net/listener.hpp"
#include "protobalance/net/worker.hpp"
#include "protobalance/state/store.hpp"

namespace pb::control {

class AdminServer;

// Loads a configuration file and runs every check of every area on it.
config::LoadResult load_config(const std::filesystem::path& file);

struct RuntimeOptions {
  unsigned threads = 0;  // overrides [service] threads when not 0
  // Where sessions log finished connections; null = no access log. Must outlive the Runtime.
  net::AccessLogSink* access_log = nullptr;
  // --log-level was given: a reload does not change the level.
  bool log_level_from_command_line = false;
};

// The running service: worker threads with their acceptors and sessions, the clusters, the
// background prober, and the control thread (the caller of run()) handling signals. It is the
// Balancer that the admin API reads and changes.
class Runtime final : public Balancer {
 public:
  Runtime(std::shared_ptr<const config::Config> cfg, RuntimeOptions options);
  ~Runtime() override;
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Binds every listener and starts the workers. Throws std::runtime_error naming the listener
  // and address when one cannot be bound.
  void start();
  // Serves until SIGTERM or SIGINT, then stops gracefully; returns the exit code. SIGHUP
  // reloads the configuration file.
  int run();

  // Re-reads the configuration file and applies it without dropping a connection: listeners
  // are bound before anything changes (a bind failure changes nothing), clusters are rebuilt
  // with their nodes' run-time state kept, removed listeners are closed, and removed nodes'
  // live connections run on until they end. A bad file changes nothing. Control thread only.
  ReloadResult reload() override;

  // Sends a listener's new connections to another cluster (empty = back to the configured
  // one). Returns an error message, or empty on success. Control thread only.
  std::string route(const std::string& listener, const std::string& cluster) override;

  // Listener -> cluster overrides set with route(). Control thread only.
  std::map<std::string, std::string, std::less<>> route_overrides() const;
  // Where each listener sends new connections now. Safe from any thread.
  std::map<std::string, std::string, std::less<>> routes() const override;
  // The configuration in force. Control thread only.
  const std::shared_ptr<const config::Config>& config() const override { return config_; }
  // The control thread's io_context (signals, admin API): run by run().
  boost::asio::io_context& control_context() { return control_; }

  // True once a stop signal was taken: the admin API then refuses changes. Control thread only.
  bool stopping() const override { return stopping_; }

  // Counts of reloads by result, for metrics.
  std::uint64_t reloads_ok() const { return reloads_ok_.load(std::memory_order_relaxed); }
  std::uint64_t reloads_failed() const { return reloads_failed_.load(std::memory_order_relaxed); }

  // Sets a node's admin state. `offline` closes its connections at once. Returns false for an
  // unknown cluster or node.
  bool set_node_state(const std::string& cluster, const std::string& node,
                      config::AdminState state) override;
  // A node's operator-set state; nullopt for an unknown cluster or node. Safe from any thread.
  std::optional<config::AdminState> node_state(const std::string& cluster,
                                               const std::string& node) const override;
  // The block list (blocks.cpp; see Balancer). Control thread only.
  std::string block(const net::Block& block) override;
  std::vector<net::Block> unblock(const config::Network& network,
                                  const std::optional<std::string>& listener) override;
  std::vector<net::Block> blocks() const override { return blocks_; }
  // How many blocks are in force now (ended ones not counted). Safe from any thread.
  std::uint64_t blocks_in_force() const;

  // Listeners, clusters and nodes with their counters, as plain values (status.hpp). Safe from
  // any thread.
  Status status() const override { return take_status(*this); }

  // One applied configuration: what the workers route by. Replaced whole on reload.
  struct Snapshot {
    std::shared_ptr<const config::Config> config;
    std::map<std::string, std::shared_ptr<balance::Cluster>, std::less<>> clusters;
    // Where each listener sends new connections (route overrides applied).
    std::map<std::string, std::string, std::less<>> routes;
  };
  // The current snapshot; safe from any thread (metrics, admin).
  std::shared_ptr<const Snapshot> snapshot() const;
  // Listener counters by listener name; safe from any thread.
  std::map<std::string, std::shared_ptr<net::ListenerStats>> listener_stats() const;
  const net::AcceptStats& accept_stats() const { return accept_stats_; }
  // Affinity lookup counters by cluster name; safe from any thread.
  std::map<std::string, std::shared_ptr<net::AffinityStats>> affinity_stats() const;
  // The client-affinity map (always present; persisted only with a store).
  affinity::AffinityMap& affinity() override { return *affinity_; }
  const affinity::AffinityMap& affinity() const { return *affinity_; }
  // The database, or null in quick mode (no configuration file, no persistence).
  state::Store* store() { return store_.get(); }
  // Live sessions over all workers.
  std::size_t active_sessions() const;
  // The twin link's figures; nullopt without [twin]. Safe from any thread.
  std::optional<state::TwinStats> twin_stats() const;

  unsigned threads() const { return static_cast<unsigned>(workers_.size()); }
  // The bound address of each listener (port 0 in the config is resolved here).
  std::map<std::string, boost::asio::ip::tcp::endpoint> listener_endpoints() const;

 private:
  // One listener: an acceptor on each worker, all bound to the same address.
  struct ListenerGroup {
    config::ListenerConfig config;
    boost::asio::ip::tcp::endpoint bound;
    std::vector<std::shared_ptr<net::Listener>> per_worker;  // index = worker
  };

  // Wiring, snapshots, reload and stop (runtime.cpp).
  std::shared_ptr<const Snapshot> make_snapshot(std::shared_ptr<const config::Config> cfg);
  void publish(std::shared_ptr<const Snapshot> snapshot);
  void open_store();
  void schedule_affinity_sweep();
  void begin_stop();
  void finish_stop();
  void retry_admin_api();

  // The listener set (listener_set.cpp).
  ListenerGroup open_group(const config::ListenerConfig& cfg);
  void start_group(const ListenerGroup& group);
  void close_group(const ListenerGroup& group);
  void route_group(const ListenerGroup& group, const Snapshot& snapshot);
  std::vector<std::shared_ptr<const net::Route>> sni_routes(
      const config::ListenerConfig& listener, const Snapshot& snapshot,
      const std::shared_ptr<net::ListenerStats>& stats);

  // The node monitor: prober, health checks and agents, on the monitor's own thread
  // (node_monitor.cpp). stop_monitor() ends and joins it (idempotent).
  void start_prober();
  void stop_monitor();
  boost::asio::awaitable<void> probe_loop();
  // Starts the check and agent loops of nodes that have none yet (see check_loop/agent_loop).
  void start_node_loops(const std::shared_ptr<balance::Cluster>& cluster);
  // [cluster.health]: checks one node every interval, first after `delay`; ends when the node
  // or the cluster's [cluster.health] is gone from the configuration.
  boost::asio::awaitable<void> check_loop(std::string cluster, std::string node,
                                          std::shared_ptr<balance::NodeRuntime> runtime,
                                          std::chrono::milliseconds delay);
  // [cluster.agent]: asks one node's agent every interval, likewise.
  boost::asio::awaitable<void> agent_loop(std::string cluster, std::string node,
                                          std::shared_ptr<balance::NodeRuntime> runtime,
                                          std::chrono::milliseconds delay);

  // Node states (node_states.cpp; set_node_state and node_state above).
  void restore_node_states();
  // set_node_state, also for a state a twin set (`share` false: not published again).
  bool change_node_state(const std::string& cluster, const std::string& node,
                         config::AdminState state, bool share);
  // route(), also for a route a twin set (`share` false: not published again).
  std::string change_route(const std::string& listener, const std::string& cluster, bool share);

  // Twins (runtime.cpp): creates, keeps or replaces the link for `cfg`'s [twin]; false when it
  // changed nothing.
  bool update_twins(const config::Config& cfg);
  // Stops every link; before the workers' contexts and the map go away.
  void stop_twins();
  // Closes the live connections to a node on every worker (node offline), unless the node is
  // available again when a worker gets to it.
  void close_node_sessions(const balance::NodeRuntime* target);

  // The block list (blocks.cpp): loaded at start (expired blocks deleted), published to the
  // workers after each change, expired by a timer on the control thread.
  void restore_blocks();
  void apply_blocks();
  void schedule_block_expiry();
  void close_blocked_sessions(const net::Block& block);
  // block() and unblock() made here (`share`: published to the twins) or by a twin.
  std::string change_block(const net::Block& block, bool share);
  std::vector<net::Block> lift_blocks(const config::Network& network,
                                      const std::optional<std::string>& listener, bool share);
  // A twin's block or unblock (subject as on the wire); on the control thread.
  void apply_twin_block(const std::string& subject, std::chrono::system_clock::time_point until);
  void apply_twin_unblock(const std::string& subject);
  // Runs `then` on the control thread once the store has committed what is queued now (at once
  // without a store), without waiting for the disk here. Skipped once stopping.
  void once_stored(std::function<void()> then);
  // After a complete re-read of Redis: lifts the shared blocks a twin removed meanwhile.
  void reconcile_twin_blocks(const state::BlocksRead& read);

  std::shared_ptr<const config::Config> config_;
  RuntimeOptions options_;
  std::chrono::milliseconds tick_;
  // Declared before the workers: sessions use them until the workers are joined.
  std::unique_ptr<state::Store> store_;
  std::unique_ptr<affinity::AffinityMap> affinity_;
  net::ListenerGuards guards_;  // listeners' guard phases and per-client state (control thread)
  balance::NodeRegistry registry_;
  mutable std::mutex snapshot_mutex_;  // guards snapshot_ and listener_stats_ (not hot path)
  std::shared_ptr<const Snapshot> snapshot_;
  std::map<std::string, std::shared_ptr<net::ListenerStats>> listener_stats_;
  std::map<std::string, std::shared_ptr<net::AffinityStats>> affinity_stats_;
  std::vector<std::unique_ptr<net::Worker>> workers_;
  std::map<std::string, ListenerGroup, std::less<>> listeners_;  // control thread only
  std::map<std::string, std::string, std::less<>> route_overrides_;  // listener -> cluster
  std::map<std::string, boost::asio::ip::tcp::endpoint> bound_;  // guarded by snapshot_mutex_
  std::atomic<std::uint64_t> reloads_ok_{0};
  std::atomic<std::uint64_t> reloads_failed_{0};
  net::AcceptStats accept_stats_;
  // The node monitor's io_context and thread (node_monitor.cpp); stopped before the workers.
  boost::asio::io_context monitor_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
      monitor_guard_{monitor_.get_executor()};
  std::thread monitor_thread_;

  boost::asio::io_context control_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer drain_timer_;
  boost::asio::steady_timer affinity_sweep_timer_;
  std::chrono::steady_clock::time_point drain_deadline_;
  bool stopping_ = false;
  bool killed_sessions_ = false;
  // The block list: the entries (control thread) and what the workers read.
  std::vector<net::Block> blocks_;
  // Subjects (twin_link.hpp) of the blocks held here that are shared with the twins (applied
  // from a twin, found in Redis, or made here and published), and since when: the ones a
  // complete re-read no longer finds in Redis were lifted by a twin. Control thread only.
  std::map<std::string, std::chrono::steady_clock::time_point, std::less<>> shared_blocks_;
  std::shared_ptr<net::BlockList> block_list_ = std::make_shared<net::BlockList>();
  boost::asio::system_timer block_expiry_timer_{control_};
  // The admin API (not in quick mode). Declared after control_, whose sockets it holds.
  std::unique_ptr<AdminServer> admin_;
  // [twin]: the link to the other balancers (null without). Routes and the map name it by raw
  // pointer, so one replaced by a reload is stopped and kept (in retired_twins_) until the end.
  std::shared_ptr<Twins> twins_;  // read by twin_stats() from other threads: twins_mutex_
  std::vector<std::shared_ptr<Twins>> retired_twins_;
  mutable std::mutex twins_mutex_;
};

}  // namespace pb::control
