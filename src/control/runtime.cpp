#include "protobalance/control/runtime.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <random>
#include <stdexcept>
#include <thread>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/config/config_diff.hpp"
#include "protobalance/config/duration.hpp"
#include "protobalance/control/admin_server.hpp"
#include "protobalance/control/notify.hpp"
#include "protobalance/balance/steady_clock.hpp"
#include "protobalance/net/connection.hpp"

namespace pb::control {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// The idle sweeper's tick: a quarter of the shortest idle timeout, so a session is closed at
// most 25% late, within [20 ms, 1 s] so that sweeping stays cheap.
std::chrono::milliseconds tick_for(const config::Config& cfg) {
  std::chrono::milliseconds shortest = std::chrono::seconds(4);
  for (const auto& cluster : cfg.clusters) {
    if (cluster.idle_timeout.count() > 0) shortest = std::min(shortest, cluster.idle_timeout);
  }
  return std::clamp(shortest / 4, std::chrono::milliseconds(20), std::chrono::milliseconds(1000));
}

// Tens of thousands of connections need two descriptors each: take all the kernel allows us.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  if (limit.rlim_cur >= limit.rlim_max) return;
  const auto previous = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("cannot raise the open-file limit from {}: {}", previous, std::strerror(errno));
  }
}

}  // namespace

config::LoadResult load_config(const std::filesystem::path& file) {
  config::LoadResult result = config::load_file(file);
  if (result.config) {
    balance::validate(*result.config, result.errors);
    net::validate_guards(*result.config, result.errors);
    if (!result.errors.empty()) result.config.reset();
  }
  return result;
}

Runtime::Runtime(std::shared_ptr<const config::Config> cfg, RuntimeOptions options)
    : config_(std::move(cfg)),
      options_(options),
      tick_(tick_for(*config_)),
      signals_(control_),
      drain_timer_(control_),
      affinity_sweep_timer_(control_) {
  open_store();
  unsigned threads = options.threads != 0 ? options.threads : config_->service.threads;
  if (threads == 0) threads = std::max(1U, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<net::Worker>(i, tick_));
  }
  publish(make_snapshot(config_));
  restore_node_states();
  restore_blocks();
  update_twins(*config_);
}

// Opens the database (not in quick mode: without a configuration file there is no state_dir
// an operator chose) and loads the affinity entries into memory.
void Runtime::open_store() {
  if (!config_->file.empty()) {
    store_ = std::make_unique<state::Store>(config_->service.state_dir);
    store_->set_ttls(affinity::make_ttl_table(*config_));
    // Availability transitions are persisted so that a restart does not hammer a node that
    // is known to be down before its next probe is due.
    registry_.set_observer([store = store_.get()](const std::string& cluster,
                                                  const std::string& node,
                                                  const balance::NodeRuntime& rt) {
      const std::int64_t since = rt.unavailable_since_ns.load(std::memory_order_relaxed);
      std::int64_t since_ms = 0;
      if (since != 0) {
        const auto age = std::chrono::nanoseconds(balance::now_ns() - since);
        since_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       (std::chrono::system_clock::now() - age).time_since_epoch())
                       .count();
      }
      store->enqueue(state::PutAvailability{cluster, node, since_ms,
                                            static_cast<std::int64_t>(rt.failures_total())});
    });
  }
  affinity_ = std::make_unique<affinity::AffinityMap>(store_.get());
  if (store_) {
    // Route overrides set by an operator survive restarts; ones naming a listener or cluster
    // that is gone are dropped when the snapshot is built.
    for (auto& [listener, cluster] : store_->load_routes()) {
      spdlog::info("listener {} routed to cluster {} (set at run time, kept across the restart)",
                   listener, cluster);
      route_overrides_[listener] = cluster;
    }
    // In the background: the listeners open at once; until the map is loaded, a lookup that
    // misses it asks the database (see AffinityMap). Logs the count and time when done.
    affinity_->load_in_background(affinity::load_hold_from_environment());
  }
}

// Forgets entries of clients gone longer than their TTL, so that they do not hold memory.
void Runtime::schedule_affinity_sweep() {
  affinity_sweep_timer_.expires_after(std::chrono::seconds(5));
  affinity_sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    affinity_->sweep(std::chrono::system_clock::now(), affinity::make_ttl_table(*config_));
    schedule_affinity_sweep();
  });
}

Runtime::~Runtime() {
  admin_.reset();  // removes the socket file
  // Runs the store's when_written() callbacks still pending (an answer awaiting a commit) while
  // control_, where they post, still exists.
  if (store_) store_->flush();
  stop_monitor();  // it posts to the workers
  for (auto& worker : workers_) worker->stop();
  for (auto& worker : workers_) worker->join();
  stop_twins();
}

bool Runtime::update_twins(const config::Config& cfg) {
  std::shared_ptr<Twins> current;
  {
    std::lock_guard lock(twins_mutex_);
    current = twins_;
  }
  if (current && cfg.twin.enabled && same_twin_config(current->config(), cfg.twin)) {
    current->set_clusters(cfg);
    return false;
  }
  if (!current && !cfg.twin.enabled) return false;
  if (current) {
    affinity_->set_observer(nullptr);
    current->stop();
  }
  std::shared_ptr<Twins> next;
  if (cfg.twin.enabled) {
    // A twin's node states and routes are applied on the control thread, as an operator's are.
    Twins::Apply apply;
    apply.node_state = [this](std::string cluster, std::string node, config::AdminState state) {
      asio::post(control_, [this, cluster = std::move(cluster), node = std::move(node), state] {
        if (stopping_) return;
        if (node_state(cluster, node) == state) return;
        if (!change_node_state(cluster, node, state, false)) {
          spdlog::info("twin: node {}/{} is not configured here; its state {} is not applied",
                       cluster, node, config::to_string(state));
        }
      });
    };
    apply.route = [this](std::string listener, std::string cluster) {
      asio::post(control_, [this, listener = std::move(listener), cluster = std::move(cluster)] {
        if (stopping_) return;
        const auto overridden = route_overrides_.find(listener);
        const bool already = cluster.empty() ? overridden == route_overrides_.end()
                                             : overridden != route_overrides_.end() &&
                                                   overridden->second == cluster;
        if (already) return;
        const std::string error = change_route(listener, cluster, false);
        if (!error.empty()) {
          spdlog::info("twin: a route set by a twin is not applied here: {}", error);
        }
      });
    };
    apply.block = [this](std::string subject, std::chrono::system_clock::time_point until) {
      asio::post(control_, [this, subject = std::move(subject), until] {
        if (!stopping_) apply_twin_block(subject, until);
      });
    };
    apply.unblock = [this](std::string subject) {
      asio::post(control_, [this, subject = std::move(subject)] {
        if (!stopping_) apply_twin_unblock(subject);
      });
    };
    apply.blocks_read = [this](state::BlocksRead read) {
      asio::post(control_, [this, read = std::move(read)] {
        if (!stopping_) reconcile_twin_blocks(read);
      });
    };
    next = std::make_shared<Twins>(cfg, *affinity_, std::move(apply));
    affinity_->set_observer(next.get());
  }
  std::lock_guard lock(twins_mutex_);
  if (current) retired_twins_.push_back(std::move(current));
  twins_ = std::move(next);
  return true;
}

void Runtime::stop_twins() {
  affinity_->set_observer(nullptr);
  std::lock_guard lock(twins_mutex_);
  if (twins_) twins_->stop();
}

std::optional<state::TwinStats> Runtime::twin_stats() const {
  std::shared_ptr<Twins> twins;
  {
    std::lock_guard lock(twins_mutex_);
    twins = twins_;
  }
  if (!twins) return std::nullopt;
  return twins->stats();
}

std::shared_ptr<const Runtime::Snapshot> Runtime::make_snapshot(
    std::shared_ptr<const config::Config> cfg) {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->config = cfg;
  std::random_device seed_source;
  for (const auto& cluster_cfg : cfg->clusters) {
    const std::uint64_t seed = (std::uint64_t{seed_source()} << 32) | seed_source();
    // NodeRegistry hands back the existing run-time state of nodes that stay, so counters,
    // admin states and availability survive the rebuild.
    snapshot->clusters.emplace(cluster_cfg.name,
                               std::make_shared<balance::Cluster>(
                                   cluster_cfg, registry_,
                                   static_cast<unsigned>(workers_.size()), seed));
  }
  for (const auto& listener : cfg->listeners) {
    auto override_it = route_overrides_.find(listener.name);
    const bool override_valid =
        override_it != route_overrides_.end() && snapshot->clusters.contains(override_it->second);
    snapshot->routes.emplace(listener.name,
                             override_valid ? override_it->second : listener.cluster);
  }
  return snapshot;
}

void Runtime::publish(std::shared_ptr<const Snapshot> snapshot) {
  std::lock_guard lock(snapshot_mutex_);
  for (const auto& listener : snapshot->config->listeners) {
    auto& stats = listener_stats_[listener.name];
    if (!stats) stats = std::make_shared<net::ListenerStats>();
  }
  for (const auto& cluster : snapshot->config->clusters) {
    auto& stats = affinity_stats_[cluster.name];
    if (!stats) stats = std::make_shared<net::AffinityStats>();
  }
  snapshot_ = std::move(snapshot);
}

std::shared_ptr<const Runtime::Snapshot> Runtime::snapshot() const {
  std::lock_guard lock(snapshot_mutex_);
  return snapshot_;
}

std::map<std::string, std::shared_ptr<net::ListenerStats>> Runtime::listener_stats() const {
  std::lock_guard lock(snapshot_mutex_);
  return listener_stats_;
}

std::map<std::string, std::shared_ptr<net::AffinityStats>> Runtime::affinity_stats() const {
  std::lock_guard lock(snapshot_mutex_);
  return affinity_stats_;
}

std::map<std::string, tcp::endpoint> Runtime::listener_endpoints() const {
  std::lock_guard lock(snapshot_mutex_);
  return bound_;
}

void Runtime::start() {
  raise_descriptor_limit();
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error value, not a signal

  const auto snap = snapshot();
  for (const auto& listener_cfg : config_->listeners) {
    ListenerGroup group = open_group(listener_cfg);
    route_group(group, *snap);
    listeners_.emplace(listener_cfg.name, std::move(group));
  }
  // Before anything is announced: a socket that cannot be created stops the start-up (unless
  // the whole state_dir is unusable, see AdminServer::start). Quick mode has no admin API
  // (nothing to reload, no state_dir an operator chose).
  if (!config_->file.empty()) admin_ = AdminServer::start(*this, *config_);
  for (const auto& [name, group] : listeners_) start_group(group);
  registry_.mark_started();  // nodes added by a reload from now on begin with slow start
  start_prober();
  schedule_affinity_sweep();
  for (auto& worker : workers_) worker->start();
  spdlog::info("proto balance serving with {} worker thread{}", workers_.size(),
               workers_.size() == 1 ? "" : "s");
  // Type=notify: systemd starts dependants only once the listeners are bound. A no-op without
  // NOTIFY_SOCKET.
  notify_service_manager("READY=1");
}

ReloadResult Runtime::reload() {
  ReloadResult result;
  notify_service_manager("RELOADING=1");
  struct NotifyReady {
    ~NotifyReady() { notify_service_manager("READY=1"); }
  } notify_ready;

  if (config_->file.empty()) {
    result.errors.push_back("quick mode has no configuration file to reload");
    reloads_failed_.fetch_add(1, std::memory_order_relaxed);
    return result;
  }
  config::LoadResult loaded = load_config(config_->file);
  if (!loaded.config) {
    for (const auto& error : loaded.errors) result.errors.push_back(error.to_string());
  }
  std::map<std::string, ListenerGroup, std::less<>> opened;  // new or moved listeners
  if (loaded.config) {
    // Bind first: if an address cannot be bound, nothing has changed yet.
    for (const auto& l : loaded.config->listeners) {
      auto it = listeners_.find(l.name);
      if (it != listeners_.end() && it->second.config.endpoint == l.endpoint) continue;
      try {
        opened.emplace(l.name, open_group(l));
      } catch (const std::exception& e) {
        result.errors.push_back(e.what());
        break;
      }
    }
  }
  if (!result.errors.empty()) {
    reloads_failed_.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("reload of {} refused; the running configuration is unchanged:",
                  config_->file.string());
    for (const auto& error : result.errors) spdlog::error("  {}", error);
    return result;  // `opened` closes its acceptors
  }

  auto next = loaded.config;
  result.changes = config::describe_changes(*config_, *next);
  if (next->service.log_level != config_->service.log_level) {
    if (options_.log_level_from_command_line) {
      result.changes.push_back(
          "[service] log_level changed: --log-level on the command line stays in force");
    } else {
      spdlog::set_level(spdlog::level::from_str(next->service.log_level));
      result.changes.push_back(fmt::format("log level now {}", next->service.log_level));
    }
  }
  // Route overrides for listeners or clusters that no longer exist are dropped.
  std::erase_if(route_overrides_, [&](const auto& entry) {
    return next->find_cluster(entry.second) == nullptr ||
           std::none_of(next->listeners.begin(), next->listeners.end(),
                        [&](const auto& l) { return l.name == entry.first; });
  });
  auto snap = make_snapshot(next);
  publish(snap);
  config_ = next;
  if (update_twins(*next)) {
    result.changes.push_back(next->twin.enabled
                                 ? fmt::format("[twin] link to {} (re)started", next->twin.redis)
                                 : std::string("[twin] removed: this balancer works alone"));
  }

  for (auto it = listeners_.begin(); it != listeners_.end();) {
    const bool kept =
        std::any_of(next->listeners.begin(), next->listeners.end(),
                    [&](const auto& l) { return l.name == it->first && !opened.contains(l.name); });
    if (kept) {
      it->second.config = *std::find_if(next->listeners.begin(), next->listeners.end(),
                                        [&](const auto& l) { return l.name == it->first; });
      route_group(it->second, *snap);
      ++it;
    } else {
      close_group(it->second);  // removed or moved: the new acceptors are already bound
      it = listeners_.erase(it);
    }
  }
  for (auto& [name, group] : opened) {
    route_group(group, *snap);
    start_group(group);
    listeners_.emplace(name, std::move(group));
  }
  registry_.retain(*next);
  if (store_) store_->set_ttls(affinity::make_ttl_table(*next));
  reloads_ok_.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("reloaded {}: {}", config_->file.string(),
               result.changes.empty() ? std::string("no changes")
                                      : fmt::format("{}", fmt::join(result.changes, "; ")));
  result.ok = true;
  if (!admin_) retry_admin_api();
  return result;
}

// The admin API did not start because state_dir could not be used: an operator who fixed the
// folder sends SIGHUP, and it starts now rather than at the next restart.
void Runtime::retry_admin_api() {
  try {
    admin_ = AdminServer::start(*this, *config_);  // says why again if it still cannot
  } catch (const std::exception& e) {
    spdlog::error("the admin API still cannot start: {}", e.what());
  }
}

std::map<std::string, std::string, std::less<>> Runtime::route_overrides() const {
  return route_overrides_;
}

std::map<std::string, std::string, std::less<>> Runtime::routes() const {
  return snapshot()->routes;
}

std::string Runtime::route(const std::string& listener, const std::string& cluster) {
  return change_route(listener, cluster, true);
}

std::string Runtime::change_route(const std::string& listener, const std::string& cluster,
                                  bool share) {
  auto it = listeners_.find(listener);
  if (it == listeners_.end()) return fmt::format("no listener named {}", listener);
  if (!cluster.empty() && config_->find_cluster(cluster) == nullptr) {
    return fmt::format("no cluster named {}", cluster);
  }
  if (cluster.empty()) {
    route_overrides_.erase(listener);
  } else {
    route_overrides_[listener] = cluster;
  }
  if (store_) {
    const auto now = std::chrono::system_clock::now().time_since_epoch();
    store_->enqueue(state::PutRoute{listener, cluster,
                                    std::chrono::duration_cast<std::chrono::seconds>(now).count()});
  }
  // Clusters are reused (not rebuilt) so that algorithm state and counters stay as they are.
  auto current = snapshot();
  auto next = std::make_shared<Snapshot>(*current);
  next->routes[listener] = cluster.empty() ? it->second.config.cluster : cluster;
  publish(next);
  route_group(it->second, *next);
  spdlog::info("listener {} now routes new connections to cluster {}{}", listener,
               next->routes.at(listener), share ? "" : " (set by a twin)");
  if (share && twins_) twins_->publish_route(listener, cluster);
  return {};
}

std::size_t Runtime::active_sessions() const {
  std::size_t total = 0;
  for (const auto& worker : workers_) total += worker->active_connections();
  return total;
}

int Runtime::run() {
  // Before start(): a signal between "listening" and here would otherwise take its default
  // action (SIGHUP would end the process).
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  signals_.add(SIGHUP);
  signals_.add(SIGUSR1);
  start();
  std::function<void(boost::system::error_code, int)> on_signal =
      [this, &on_signal](boost::system::error_code ec, int signo) {
        if (ec) return;
        if (signo == SIGHUP) {
          if (!stopping_) {
            spdlog::info("SIGHUP: reloading {}", config_->file.string());
            reload();
          }
        } else if (signo == SIGUSR1) {
          // Log rotation: the access log is reopened at its path before its next line.
          if (options_.access_log != nullptr) {
            spdlog::info("SIGUSR1: reopening the access log");
            options_.access_log->reopen();
          } else {
            spdlog::info("SIGUSR1: no access log to reopen");
          }
        } else if (stopping_) {
          spdlog::warn("second stop signal ({}): exiting now",
                       signo == SIGINT ? "SIGINT" : "SIGTERM");
          spdlog::default_logger()->flush();
          std::_Exit(0);
        } else {
          spdlog::info("{}: stopping; running connections get up to {}",
                       signo == SIGINT ? "SIGINT" : "SIGTERM",
                       config::format_duration(config_->service.shutdown_timeout));
          begin_stop();
        }
        signals_.async_wait(on_signal);
      };
  signals_.async_wait(on_signal);
  control_.run();
  spdlog::info("stopped");
  return 0;
}

// Stops accepting at once (listening sockets closed, so new connects are refused), then lets
// running sessions end by themselves until shutdown_timeout.
void Runtime::begin_stop() {
  stopping_ = true;
  notify_service_manager("STOPPING=1");
  for (const auto& [name, group] : listeners_) close_group(group);
  drain_deadline_ = std::chrono::steady_clock::now() + config_->service.shutdown_timeout;
  finish_stop();
}

void Runtime::finish_stop() {
  const bool idle = active_sessions() == 0;
  const bool late = std::chrono::steady_clock::now() >= drain_deadline_;
  if (idle) {
    stop_monitor();
    for (auto& worker : workers_) worker->stop();
    for (auto& worker : workers_) worker->join();
    signals_.cancel();
    affinity_sweep_timer_.cancel();
    if (admin_) admin_->stop();
    control_.stop();
    return;
  }
  if (late && !killed_sessions_) {
    killed_sessions_ = true;
    spdlog::warn("shutdown timeout reached: closing {} connection(s)", active_sessions());
    for (auto& worker : workers_) {
      worker->post([w = worker.get()] {
        w->close_connections([](const net::Connection&) { return true; });
      });
    }
  }
  drain_timer_.expires_after(std::chrono::milliseconds(20));
  drain_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) finish_stop();
  });
}

}  // namespace pb::control
