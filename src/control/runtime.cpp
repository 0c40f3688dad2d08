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
#include <spdlog/spdlog.h>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/config/duration.hpp"
#include "protobalance/net/connect.hpp"

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
    if (!result.errors.empty()) result.config.reset();
  }
  return result;
}

Runtime::Runtime(std::shared_ptr<const config::Config> cfg, RuntimeOptions options)
    : config_(std::move(cfg)),
      tick_(tick_for(*config_)),
      signals_(control_),
      drain_timer_(control_) {
  unsigned threads = options.threads != 0 ? options.threads : config_->service.threads;
  if (threads == 0) threads = std::max(1U, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    workers_.push_back(std::make_unique<net::Worker>(i, tick_));
  }
  build_snapshot();
}

Runtime::~Runtime() {
  for (auto& worker : workers_) worker->stop();
  for (auto& worker : workers_) worker->join();
}

void Runtime::build_snapshot() {
  auto snapshot = std::make_shared<Snapshot>();
  snapshot->config = config_;
  std::random_device seed_source;
  for (const auto& cluster_cfg : config_->clusters) {
    const std::uint64_t seed = (std::uint64_t{seed_source()} << 32) | seed_source();
    snapshot->clusters.emplace(cluster_cfg.name,
                               std::make_shared<balance::Cluster>(
                                   cluster_cfg, registry_, threads(), seed));
  }
  snapshot_ = std::move(snapshot);
}

void Runtime::start() {
  raise_descriptor_limit();
  std::signal(SIGPIPE, SIG_IGN);  // a peer that vanished is an error value, not a signal

  listeners_.resize(workers_.size());
  for (const auto& listener_cfg : config_->listeners) {
    auto cluster = snapshot_->clusters.at(listener_cfg.cluster);
    tcp::endpoint endpoint = listener_cfg.endpoint;
    for (auto& worker : workers_) {
      tcp::acceptor acceptor(worker->context());
      try {
        acceptor = net::open_acceptor(worker->context(), endpoint);
      } catch (const boost::system::system_error& e) {
        throw std::runtime_error(fmt::format("listener {}: cannot listen on {}: {}",
                                             listener_cfg.name, listener_cfg.address,
                                             e.code().message()));
      }
      // Port 0 is resolved by the first bind; the other workers join that port.
      endpoint = acceptor.local_endpoint();
      auto route = std::make_shared<const net::Route>(net::Route{listener_cfg.name, cluster});
      listeners_[worker->index()].push_back(std::make_shared<net::Listener>(
          *worker, std::move(acceptor), std::move(route), accept_stats_));
    }
    bound_[listener_cfg.name] = endpoint;
    spdlog::info("listener {} on {} -> cluster {} ({} nodes, {})", listener_cfg.name,
                 fmt::format("{}:{}", endpoint.address().is_v6()
                                          ? "[" + endpoint.address().to_string() + "]"
                                          : endpoint.address().to_string(),
                             endpoint.port()),
                 cluster->name(), cluster->nodes().size(), cluster->config().algorithm);
  }
  for (auto& per_worker : listeners_) {
    for (auto& listener : per_worker) listener->start();
  }
  start_prober();
  for (auto& worker : workers_) worker->start();
  spdlog::info("proto balance serving with {} worker thread{}", workers_.size(),
               workers_.size() == 1 ? "" : "s");
}

// Probes unavailable nodes with a plain TCP connect once their retry_interval has passed.
// Runs on worker 0: a probe is a connect like any other and must not wait for the control
// thread.
void Runtime::start_prober() {
  asio::co_spawn(workers_.front()->context(), probe_loop(), asio::detached);
}

asio::awaitable<void> Runtime::probe_loop() {
  auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  const auto snapshot = snapshot_;
  for (;;) {
    timer.expires_after(std::chrono::milliseconds(100));
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    const std::int64_t now = now_ns();
    for (const auto& [name, cluster] : snapshot->clusters) {
      const auto& cfg = cluster->config();
      for (std::uint32_t i = 0; i < cluster->nodes().size(); ++i) {
        auto& runtime = *cluster->nodes()[i].runtime;
        if (runtime.up() || runtime.next_probe_ns.load(std::memory_order_relaxed) > now) continue;
        // Not again until this probe has had its chance to finish.
        runtime.next_probe_ns.store(
            now + std::chrono::nanoseconds(cfg.retry_interval + cfg.connect_timeout).count(),
            std::memory_order_relaxed);
        asio::co_spawn(
            executor,
            [cluster, i]() -> asio::awaitable<void> {
              tcp::socket probe(co_await asio::this_coro::executor);
              const auto& node = cluster->nodes()[i];
              auto result = co_await net::connect_with_timeout(probe, node.endpoint,
                                                               cluster->config().connect_timeout);
              cluster->on_probe(i, !result);
            },
            asio::detached);
      }
    }
  }
}

bool Runtime::set_node_state(const std::string& cluster_name, const std::string& node_name,
                             config::AdminState state) {
  auto it = snapshot_->clusters.find(cluster_name);
  if (it == snapshot_->clusters.end()) return false;
  const std::int32_t index = it->second->find(node_name);
  if (index < 0) return false;
  const auto& node = it->second->nodes()[static_cast<std::uint32_t>(index)];
  const auto previous = node.runtime->admin_state.exchange(state);
  if (previous != state) {
    spdlog::info("node {}/{}: {} -> {}", cluster_name, node_name, config::to_string(previous),
                 config::to_string(state));
  }
  if (state == config::AdminState::offline) {
    const balance::NodeRuntime* target = node.runtime.get();
    for (auto& worker : workers_) {
      asio::post(worker->context(), [w = worker.get(), target] {
        w->close_sessions([target](const net::SessionEntry& e) { return e.node_runtime == target; });
      });
    }
  }
  return true;
}

std::size_t Runtime::active_sessions() const {
  std::size_t total = 0;
  for (const auto& worker : workers_) total += worker->active_sessions();
  return total;
}

int Runtime::run() {
  start();
  signals_.add(SIGTERM);
  signals_.add(SIGINT);
  std::function<void(boost::system::error_code, int)> on_signal =
      [this, &on_signal](boost::system::error_code ec, int signo) {
        if (ec) return;
        if (stopping_) {
          spdlog::warn("second stop signal ({}): exiting now", signo == SIGINT ? "SIGINT" : "SIGTERM");
          spdlog::default_logger()->flush();
          std::_Exit(0);
        }
        spdlog::info("{}: stopping; running connections get up to {}",
                     signo == SIGINT ? "SIGINT" : "SIGTERM",
                     config::format_duration(config_->service.shutdown_timeout));
        begin_stop();
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
  for (auto& worker : workers_) {
    asio::post(worker->context(), [this, w = worker.get()] {
      for (auto& listener : listeners_[w->index()]) listener->close();
    });
  }
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
    control_.stop();
    return;
  }
  if (late && !killed_sessions_) {
    killed_sessions_ = true;
    spdlog::warn("shutdown timeout reached: closing {} connection(s)", active_sessions());
    for (auto& worker : workers_) {
      asio::post(worker->context(), [w = worker.get()] {
        w->close_sessions([](const net::SessionEntry&) { return true; });
      });
    }
  }
  drain_timer_.expires_after(std::chrono::milliseconds(20));
  drain_timer_.async_wait([this](boost::system::error_code ec) {
    if (!ec) finish_stop();
  });
}

}  // namespace pb::control
