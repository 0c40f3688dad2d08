#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include "protobalance/balance/cluster.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/net/listener.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::control {

// Loads a configuration file and runs every check of every area on it.
config::LoadResult load_config(const std::filesystem::path& file);

struct RuntimeOptions {
  unsigned threads = 0;  // overrides [service] threads when not 0
};

// The running service: worker threads with their acceptors and sessions, the clusters, the
// background prober, and the control thread (the caller of run()) handling signals.
class Runtime {
 public:
  Runtime(std::shared_ptr<const config::Config> cfg, RuntimeOptions options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // Binds every listener and starts the workers. Throws std::runtime_error naming the listener
  // and address when one cannot be bound.
  void start();
  // Serves until SIGTERM or SIGINT, then stops gracefully; returns the exit code.
  int run();

  // Sets a node's admin state. `offline` closes its connections at once. Returns false for an
  // unknown cluster or node.
  bool set_node_state(const std::string& cluster, const std::string& node,
                      config::AdminState state);

  unsigned threads() const { return static_cast<unsigned>(workers_.size()); }
  // The bound address of each listener (port 0 in the config is resolved here).
  const std::map<std::string, boost::asio::ip::tcp::endpoint>& listener_endpoints() const {
    return bound_;
  }

 private:
  struct Snapshot {
    std::shared_ptr<const config::Config> config;
    std::map<std::string, std::shared_ptr<balance::Cluster>, std::less<>> clusters;
  };

  void build_snapshot();
  void start_prober();
  boost::asio::awaitable<void> probe_loop();
  void begin_stop();
  void finish_stop();
  std::size_t active_sessions() const;

  std::shared_ptr<const config::Config> config_;
  std::chrono::milliseconds tick_;
  balance::NodeRegistry registry_;
  std::shared_ptr<const Snapshot> snapshot_;
  std::vector<std::unique_ptr<net::Worker>> workers_;
  // listeners_[worker][i]: one acceptor per listener per worker.
  std::vector<std::vector<std::shared_ptr<net::Listener>>> listeners_;
  std::map<std::string, boost::asio::ip::tcp::endpoint> bound_;
  net::AcceptStats accept_stats_;

  boost::asio::io_context control_;
  boost::asio::signal_set signals_;
  boost::asio::steady_timer drain_timer_;
  std::chrono::steady_clock::time_point drain_deadline_;
  bool stopping_ = false;
  bool killed_sessions_ = false;
};

}  // namespace pb::control
