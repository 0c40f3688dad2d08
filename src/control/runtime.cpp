#include "protobalance/control/runtime.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <random>
#include <stdexcept>
#include <thread>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "protobalance/balance/agent.hpp"
#include "protobalance/balance/algorithm.hpp"
#include "protobalance/balance/health_check.hpp"
#include "protobalance/config/config_diff.hpp"
#include "protobalance/config/duration.hpp"
#include "protobalance/control/admin_server.hpp"
#include "protobalance/control/notify.hpp"
#include "protobalance/net/connect.hpp"
#include "protobalance/net/connection.hpp"
#include "protobalance/net/proxy_header_in.hpp"

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

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
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
        const auto age = std::chrono::nanoseconds(now_ns() - since);
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

// Applies the node states saved by an earlier run: an operator's admin state wins over the
// configured initial state; a node that was unavailable stays so until its next probe is due.
void Runtime::restore_node_states() {
  if (!store_) return;
  const auto snap = snapshot();
  const auto wall_now = std::chrono::system_clock::now();
  const std::int64_t steady_now = now_ns();
  for (const auto& row : store_->load_node_states()) {
    auto rt = registry_.find(row.cluster, row.node);
    const config::ClusterConfig* cluster = snap->config->find_cluster(row.cluster);
    if (!rt || cluster == nullptr) continue;  // no longer configured
    if (auto state = config::parse_admin_state(row.admin_state)) {
      rt->admin_state.store(*state, std::memory_order_relaxed);
      spdlog::info("node {}/{}: {} (set at run time, kept across the restart)", row.cluster,
                   row.node, config::to_string(*state));
    }
    if (row.unavailable_since_ms > 0) {
      const auto since_wall = std::chrono::system_clock::time_point(
          std::chrono::milliseconds(row.unavailable_since_ms));
      const auto age = std::chrono::duration_cast<std::chrono::nanoseconds>(wall_now - since_wall);
      const auto retry = std::chrono::duration_cast<std::chrono::nanoseconds>(cluster->retry_interval);
      // The first probe slot after now on the node's retry grid.
      const std::int64_t periods = age.count() <= 0 ? 1 : age.count() / retry.count() + 1;
      rt->unavailable_since_ns.store(std::max<std::int64_t>(1, steady_now - age.count()),
                                     std::memory_order_relaxed);
      rt->next_probe_ns.store(steady_now - age.count() + periods * retry.count(),
                              std::memory_order_relaxed);
      spdlog::info("node {}/{}: unavailable since {} s ago (from the last run); next probe in {} ms",
                   row.cluster, row.node, age.count() / 1'000'000'000,
                   (steady_now - age.count() + periods * retry.count() - steady_now) / 1'000'000);
    }
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
  for (auto& worker : workers_) worker->stop();
  for (auto& worker : workers_) worker->join();
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

Runtime::ListenerGroup Runtime::open_group(const config::ListenerConfig& cfg) {
  ListenerGroup group;
  group.config = cfg;
  tcp::endpoint endpoint = cfg.endpoint;
  for (auto& worker : workers_) {
    net::Acceptor acceptor(worker->context());
    try {
      acceptor = net::open_acceptor(worker->context(), endpoint);
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
  for (auto& phase : guards_.phases(group.config)) client_phases.push_back(std::move(phase));
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    // Each worker gets its own Route object: its reference count is then written by that
    // worker only.
    auto route = std::make_shared<const net::Route>(
        net::Route{group.config.name, cluster, stats, affinity_.get(), affinity_stats,
                   options_.access_log, client_phases, sni_routes(group.config, snapshot, stats)});
    auto listener = group.per_worker[w];
    if (!listener->route()) {
      listener->set_route(std::move(route));  // not started yet: no worker reads it
    } else {
      asio::post(workers_[w]->context(),
                 [listener, route = std::move(route)]() mutable { listener->set_route(std::move(route)); });
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
                   std::move(affinity_stats), options_.access_log, {}, {}}));
  }
  return routes;
}

void Runtime::start_group(const ListenerGroup& group) {
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    asio::post(workers_[w]->context(), [listener = group.per_worker[w]] { listener->start(); });
  }
  const auto& ep = group.bound;
  spdlog::info("listener {} on {} -> cluster {}", group.config.name,
               ep.address().is_v6() ? fmt::format("[{}]:{}", ep.address().to_string(), ep.port())
                                    : fmt::format("{}:{}", ep.address().to_string(), ep.port()),
               snapshot()->routes.at(group.config.name));
  std::lock_guard lock(snapshot_mutex_);
  bound_[group.config.name] = ep;
}

void Runtime::close_group(const ListenerGroup& group) {
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    asio::post(workers_[w]->context(), [listener = group.per_worker[w]] { listener->close(); });
  }
  std::lock_guard lock(snapshot_mutex_);
  bound_.erase(group.config.name);
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
    spdlog::error("reload of {} refused; the running configuration is unchanged:", config_->file.string());
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

  for (auto it = listeners_.begin(); it != listeners_.end();) {
    const bool kept = std::any_of(next->listeners.begin(), next->listeners.end(), [&](const auto& l) {
      return l.name == it->first && !opened.contains(l.name);
    });
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
               result.changes.empty() ? std::string("no changes") : fmt::format("{}", fmt::join(result.changes, "; ")));
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
  spdlog::info("listener {} now routes new connections to cluster {}", listener,
               next->routes.at(listener));
  return {};
}

// Probes unavailable nodes with a plain TCP connect once their retry_interval has passed.
// Runs on worker 0: a probe is a connect like any other and must not wait for the control
// thread.
void Runtime::start_prober() {
  asio::co_spawn(workers_.front()->context(), probe_loop(), asio::detached);
}

asio::awaitable<void> Runtime::probe_loop() {
  net::Worker& worker = *workers_.front();
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    const std::int64_t now = now_ns();
    const auto current = snapshot();
    for (const auto& [name, cluster] : current->clusters) {
      const auto& cfg = cluster->config();
      start_node_loops(cluster);
      if (cfg.health) continue;  // its checks bring nodes back, not plain probes
      for (std::uint32_t i = 0; i < cluster->nodes().size(); ++i) {
        auto& runtime = *cluster->nodes()[i].runtime;
        if (runtime.up() || runtime.next_probe_ns.load(std::memory_order_relaxed) > now) continue;
        // Not again until this probe has had its chance to finish.
        runtime.next_probe_ns.store(
            now + std::chrono::nanoseconds(cfg.retry_interval + cfg.connect_timeout).count(),
            std::memory_order_relaxed);
        asio::co_spawn(
            worker.context(),
            [cluster, i, &worker]() -> net::Task<void> {
              net::PollSlot slot;  // declared first: outlives the probe's registration
              net::Fd probe;
              const auto& node = cluster->nodes()[i];
              auto result = co_await net::connect_with_timeout(
                  worker, probe, slot, node.endpoint, cluster->config().connect_timeout);
              // A node that expects a PROXY header gets one that says "a probe, no client".
              if (!result) net::send_local_header(probe, cluster->config().nodes[i].proxy_protocol);
              cluster->on_probe(i, !result);
            },
            asio::detached);
      }
    }
  }
}

void Runtime::start_node_loops(const std::shared_ptr<balance::Cluster>& cluster) {
  const auto& cfg = cluster->config();
  if (!cfg.health && !cfg.agent) return;
  const auto& nodes = cluster->nodes();
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    const auto& node = nodes[i];
    // A loop that ended by an exception logs it; its flag stays set so that it is not
    // restarted in a tight cycle.
    const auto log_escape = [](std::exception_ptr error) {
      if (!error) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& e) {
        spdlog::error("node check loop ended: {}", e.what());
      }
    };
    if (cfg.health && !node.runtime->checker_running.load() &&
        !node.runtime->checker_running.exchange(true)) {
      asio::co_spawn(workers_.front()->context(),
                     check_loop(cluster->name(), node.name, node.runtime,
                                balance::check_offset(i, nodes.size(), cfg.health->interval)),
                     log_escape);
    }
    if (cfg.agent && !node.runtime->agent_running.load() &&
        !node.runtime->agent_running.exchange(true)) {
      asio::co_spawn(workers_.front()->context(),
                     agent_loop(cluster->name(), node.name, node.runtime,
                                balance::check_offset(i, nodes.size(), cfg.agent->interval)),
                     log_escape);
    }
  }
}

asio::awaitable<void> Runtime::check_loop(std::string cluster_name, std::string node_name,
                                          std::shared_ptr<balance::NodeRuntime> runtime,
                                          std::chrono::milliseconds delay) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(delay);
    if (auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable)); ec) break;
    // Looked up every round: a reload may have changed the node, the checks, or removed them.
    const auto current = snapshot();
    const auto found = current->clusters.find(cluster_name);
    if (found == current->clusters.end() || !found->second->config().health) break;
    const auto cluster = found->second;
    const std::int32_t index = cluster->find(node_name);
    if (index < 0) break;
    const auto& node = cluster->nodes()[static_cast<std::uint32_t>(index)];
    if (node.runtime != runtime) break;
    const auto& cfg = cluster->config();
    const auto& health = *cfg.health;

    balance::CheckTarget target;
    target.endpoint = node.endpoint;
    if (health.port != 0) target.endpoint.port(health.port);
    target.timeout = std::min(health.timeout.value_or(cfg.connect_timeout), health.interval);
    // A node that expects a PROXY header gets one that says "a check, no client".
    const auto version = cfg.nodes[static_cast<std::uint32_t>(index)].proxy_protocol;
    target.preamble = std::string(net::local_header(version));
    target.send = health.send;
    target.expect = health.expect;
    const auto outcome = co_await balance::run_check(std::move(target));
    cluster->on_check(static_cast<std::uint32_t>(index), outcome.result, outcome.detail);
    delay = health.interval;
  }
  // Checks switched off by a reload (or the node removed): their verdict no longer holds.
  runtime->check_down.store(false);
  runtime->checks_passed_in_row.store(0);
  runtime->checks_failed_in_row.store(0);
  runtime->checker_running.store(false);
}

asio::awaitable<void> Runtime::agent_loop(std::string cluster_name, std::string node_name,
                                          std::shared_ptr<balance::NodeRuntime> runtime,
                                          std::chrono::milliseconds delay) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  std::string problem;  // the last failure logged, so that each change is logged once
  for (;;) {
    timer.expires_after(delay);
    if (auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable)); ec) break;
    const auto current = snapshot();
    const auto found = current->clusters.find(cluster_name);
    if (found == current->clusters.end() || !found->second->config().agent) break;
    const auto cluster = found->second;
    const std::int32_t index = cluster->find(node_name);
    if (index < 0) break;
    const auto& node = cluster->nodes()[static_cast<std::uint32_t>(index)];
    if (node.runtime != runtime) break;
    const auto& agent = *cluster->config().agent;
    delay = agent.interval;

    auto endpoint = node.endpoint;
    endpoint.port(agent.port);
    const auto line = co_await balance::read_agent_line(endpoint, agent.timeout);
    std::string failure;
    balance::AgentReply reply;
    if (line.result != balance::CheckResult::ok) {
      failure = fmt::format("no reply ({}{}{})", balance::to_string(line.result),
                            line.detail.empty() ? "" : ": ", line.detail);
    } else {
      reply = balance::parse_agent_reply(line.line);
      if (!reply.error.empty()) {
        failure = fmt::format("garbled reply \"{}\": {}", balance::printable(line.line),
                              reply.error);
      }
    }
    if (!failure.empty()) {
      // The last good values stay for three intervals (see min_load.cpp); the states stay.
      if (failure != problem) {
        spdlog::warn("node {}/{}: agent: {}", cluster_name, node_name, failure);
        problem = failure;
      }
      continue;
    }
    if (!problem.empty()) {
      spdlog::info("node {}/{}: agent answers again: \"{}\"", cluster_name, node_name,
                   balance::printable(line.line));
      problem.clear();
    }
    const auto node_index = static_cast<std::uint32_t>(index);
    if (reply.up) {
      const bool was_down = runtime->agent_down.exchange(!*reply.up);
      if (was_down != !*reply.up) {
        spdlog::info("node {}/{}: agent says {}", cluster_name, node_name, *reply.up ? "up" : "down");
        if (*reply.up) cluster->restart_ramp(node_index);
      }
    }
    if (reply.state) {
      const auto previous = runtime->agent_state.exchange(*reply.state);
      if (previous != *reply.state) {
        spdlog::info("node {}/{}: agent state {} -> {}", cluster_name, node_name,
                     config::to_string(previous), config::to_string(*reply.state));
        if (*reply.state == config::AdminState::available) cluster->restart_ramp(node_index);
        if (*reply.state == config::AdminState::offline) close_node_sessions(runtime.get());
      }
    }
    if (reply.weight_percent) runtime->agent_weight_percent.store(*reply.weight_percent);
    {
      std::lock_guard lock(runtime->agent_mutex);
      runtime->agent_values = std::move(reply.values);
      runtime->agent_values_ns = now_ns();
    }
  }
  // The agent switched off by a reload (or the node removed): what it said no longer holds.
  runtime->agent_down.store(false);
  runtime->agent_state.store(config::AdminState::available);
  runtime->agent_weight_percent.store(100);
  {
    std::lock_guard lock(runtime->agent_mutex);
    runtime->agent_values.clear();
    runtime->agent_values_ns = 0;
  }
  runtime->agent_running.store(false);
}

void Runtime::close_node_sessions(const balance::NodeRuntime* target) {
  for (auto& worker : workers_) {
    asio::post(worker->context(), [w = worker.get(), target] {
      // Available again before this ran: its new sessions are welcome.
      if (target->effective_state() != config::AdminState::offline) return;
      w->close_connections(
          [target](const net::Connection& c) { return c.node_runtime() == target; });
    });
  }
}

bool Runtime::set_node_state(const std::string& cluster_name, const std::string& node_name,
                             config::AdminState state) {
  const auto current = snapshot();
  auto it = current->clusters.find(cluster_name);
  if (it == current->clusters.end()) return false;
  const std::int32_t index = it->second->find(node_name);
  if (index < 0) return false;
  const auto& node = it->second->nodes()[static_cast<std::uint32_t>(index)];
  const auto previous = node.runtime->admin_state.exchange(state);
  if (previous != state) {
    spdlog::info("node {}/{}: {} -> {}", cluster_name, node_name, config::to_string(previous),
                 config::to_string(state));
    // Back in service: slow start, if configured, ramps its share up.
    if (state == config::AdminState::available) it->second->restart_ramp(static_cast<std::uint32_t>(index));
  }
  if (store_) {
    store_->enqueue(state::PutAdminState{cluster_name, node_name,
                                         std::string(config::to_string(state))});
  }
  if (state == config::AdminState::offline) close_node_sessions(node.runtime.get());
  return true;
}

std::optional<config::AdminState> Runtime::node_state(const std::string& cluster_name,
                                                      const std::string& node_name) const {
  const auto current = snapshot();
  const auto it = current->clusters.find(cluster_name);
  if (it == current->clusters.end()) return std::nullopt;
  const std::int32_t index = it->second->find(node_name);
  if (index < 0) return std::nullopt;
  return it->second->nodes()[static_cast<std::uint32_t>(index)].runtime->admin_state.load(
      std::memory_order_relaxed);
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
          spdlog::warn("second stop signal ({}): exiting now", signo == SIGINT ? "SIGINT" : "SIGTERM");
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
      asio::post(worker->context(), [w = worker.get()] {
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
