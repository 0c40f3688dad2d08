#include "protobalance/balance/cluster.hpp"

#include <algorithm>
#include <limits>
#include <set>
#include <span>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "protobalance/balance/steady_clock.hpp"
#include "protobalance/config/duration.hpp"

namespace pb::balance {
namespace {

// Mixes the configured seed (splitmix64), so that nearby seeds give unrelated random streams.
std::uint64_t mixed_seed(std::uint64_t seed) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

// --- NodeRegistry -------------------------------------------------------------------------------

std::shared_ptr<NodeRuntime> NodeRegistry::get(const std::string& cluster, const std::string& node,
                                               AdminState initial) {
  std::lock_guard lock(mutex_);
  auto& slot = nodes_[{cluster, node}];
  if (!slot) {
    // Only a new entry takes the configured state: one set at run time (pbadmin) must survive a
    // reload of an unchanged file.
    slot = std::make_shared<NodeRuntime>();
    slot->admin_state.store(initial, std::memory_order_relaxed);
    // A node added by a reload ramps up (slow start); those present at start take full weight.
    if (started_) slot->eligible_since_ns.store(now_ns(), std::memory_order_relaxed);
  }
  return slot;
}

std::shared_ptr<NodeRuntime> NodeRegistry::find(const std::string& cluster,
                                                const std::string& node) {
  std::lock_guard lock(mutex_);
  auto it = nodes_.find({cluster, node});
  return it == nodes_.end() ? nullptr : it->second;
}

void NodeRegistry::retain(const config::Config& cfg) {
  std::set<std::pair<std::string, std::string>> wanted;
  for (const auto& cluster : cfg.clusters) {
    for (const auto& node : cluster.nodes) wanted.emplace(cluster.name, node.name);
  }
  std::lock_guard lock(mutex_);
  std::erase_if(nodes_, [&](const auto& entry) { return !wanted.contains(entry.first); });
}

// --- TriedSet -----------------------------------------------------------------------------------

TriedSet::TriedSet(std::size_t node_count) {
  if (node_count > inline_.size() * 64) big_.assign((node_count + 63) / 64, 0);
}

bool TriedSet::contains(std::uint32_t node) const {
  const std::size_t word = node / 64;
  const std::uint64_t bit = std::uint64_t{1} << (node % 64);
  if (!big_.empty()) return word < big_.size() && (big_[word] & bit) != 0;
  return word < inline_.size() && (inline_[word] & bit) != 0;
}

void TriedSet::insert(std::uint32_t node) {
  const std::size_t word = node / 64;
  const std::uint64_t bit = std::uint64_t{1} << (node % 64);
  // A node beyond the size given at construction cannot be one of the cluster's; ignore it.
  if (!big_.empty()) {
    if (word < big_.size()) big_[word] |= bit;
  } else if (word < inline_.size()) {
    inline_[word] |= bit;
  }
}

// --- Cluster ------------------------------------------------------------------------------------

Cluster::Cluster(const config::ClusterConfig& cfg, NodeRegistry& registry, unsigned workers,
                 std::uint64_t seed)
    : name_(cfg.name), registry_(&registry), config_(cfg) {
  nodes_.reserve(config_.nodes.size());
  for (const auto& nc : config_.nodes) {
    Node node;
    node.name = nc.name;
    node.endpoint = nc.endpoint;
    node.address = nc.address;
    node.load_factor = nc.load_factor;
    node.max_connections = nc.max_connections;
    node.tier = nc.tier;
    node.name_hash = stable_name_hash(nc.name);
    node.runtime = registry.get(config_.name, nc.name, nc.state);
    nodes_.push_back(std::move(node));
  }
  for (std::size_t i = 0; i < config_.nodes.size(); ++i) {
    if (!config_.nodes[i].fallover.empty()) nodes_[i].fallover = find(config_.nodes[i].fallover);
  }

  const AlgorithmEntry* entry = find_algorithm(config_.algorithm);
  if (entry == nullptr) {
    throw std::invalid_argument("cluster \"" + name_ + "\": unknown algorithm \"" +
                                config_.algorithm + "\"");
  }
  // `workers` no longer shapes anything: every worker shares the one algorithm below, so that
  // k sequential connections over n equal nodes go exactly k/n to each, whatever the threads.
  (void)workers;
  algorithm_ = entry->make(AlgorithmParams{config_, mixed_seed(seed)});
  candidates_.reserve(nodes_.size());
  load_factors_.resize(nodes_.size());
  for (std::size_t i = 0; i < nodes_.size(); ++i) load_factors_[i] = nodes_[i].load_factor;
  dynamic_load_factors_ = config_.agent.has_value() || config_.slow_start.count() > 0;
}

std::int32_t Cluster::find(std::string_view node_name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].name == node_name) return static_cast<std::int32_t>(i);
  }
  return -1;
}

bool Cluster::eligible(std::uint32_t node) const {
  const Node& n = nodes_[node];
  const NodeRuntime& rt = *n.runtime;
  return rt.effective_state() == AdminState::available && rt.up() &&
         !rt.check_down.load(std::memory_order_relaxed) &&
         !rt.agent_down.load(std::memory_order_relaxed) &&
         (n.max_connections == 0 ||
          rt.active.load(std::memory_order_relaxed) < std::int64_t{n.max_connections});
}

std::int32_t Cluster::choose(unsigned worker, const boost::asio::ip::address& client,
                             TriedSet& tried, std::int32_t preferred) {
  (void)worker;  // one algorithm for all workers
  const bool has_preferred = preferred >= 0 && static_cast<std::size_t>(preferred) < nodes_.size();
  // Every pass that does not return marks one more node as tried (every step below yields only
  // untried nodes), so the loop ends after at most one pass per node.
  for (;;) {
    std::int32_t pick = -1;
    if (has_preferred) {
      // An untried, eligible preferred node is taken; otherwise (it failed just now, or cannot
      // take connections) its fall-over chain comes before the algorithm.
      const auto p = static_cast<std::uint32_t>(preferred);
      pick = !tried.contains(p) && eligible(p) ? preferred : follow_fallover(p, tried);
    }
    if (pick < 0) pick = pick_by_algorithm(client, tried);
    if (pick < 0) pick = last_resort(tried);
    if (pick < 0) return -1;
    const auto node = static_cast<std::uint32_t>(pick);
    tried.insert(node);
    // Another worker may have taken the last slot since the eligibility check; then this node
    // is full for this client too, and the choice goes on.
    if (try_acquire(node)) return pick;
  }
}

std::int32_t Cluster::pick_by_algorithm(const boost::asio::ip::address& client,
                                        const TriedSet& tried) {
  const auto node_count = static_cast<std::uint32_t>(nodes_.size());
  // Nothing here blocks or allocates: workers wait for each other only for a scan of the nodes.
  std::lock_guard lock(pick_mutex_);
  auto& candidates = candidates_;
  Algorithm& algorithm = *algorithm_;
  if (dynamic_load_factors_) {
    const std::int64_t now = now_ns();
    for (std::uint32_t i = 0; i < node_count; ++i) load_factors_[i] = effective_load_factor(i, now);
  }
  const std::span<const double> factors = load_factors_;

  // Eligibility is read from counters other workers change meanwhile; if the eligible nodes of
  // the chosen tier vanish between the scans below, start over (bounded, as a guard against a
  // pathological flapping node).
  for (int attempt = 0; attempt < 4; ++attempt) {
    std::uint32_t tier = std::numeric_limits<std::uint32_t>::max();
    for (std::uint32_t i = 0; i < node_count; ++i) {
      if (nodes_[i].tier < tier && !tried.contains(i) && eligible(i)) tier = nodes_[i].tier;
    }
    if (tier == std::numeric_limits<std::uint32_t>::max()) return -1;

    // The algorithm sees the tier's draining, full and unavailable nodes too, so their share is
    // kept for them and, while they cannot take it, goes to their fall-over chain (the
    // "a::256 ! b::64" overflow), not spread over everyone.
    candidates.clear();
    for (std::uint32_t i = 0; i < node_count; ++i) {
      if (nodes_[i].tier == tier && !tried.contains(i) &&
          nodes_[i].runtime->effective_state() != AdminState::offline) {
        candidates.push_back(i);
      }
    }
    const std::uint32_t picked = algorithm.pick(PickInput{nodes_, candidates, client, factors});
    if (eligible(picked)) return static_cast<std::int32_t>(picked);
    if (const std::int32_t next = follow_fallover(picked, tried); next >= 0) return next;

    // Its chain is exhausted: the share goes to the tier's other nodes, by the same algorithm.
    candidates.clear();
    for (std::uint32_t i = 0; i < node_count; ++i) {
      if (nodes_[i].tier == tier && !tried.contains(i) && eligible(i)) candidates.push_back(i);
    }
    if (!candidates.empty()) {
      return static_cast<std::int32_t>(algorithm.pick(PickInput{nodes_, candidates, client, factors}));
    }
  }
  return -1;
}

std::int32_t Cluster::last_resort(const TriedSet& tried) const {
  std::int32_t best = -1;
  std::int64_t best_failed = 0;
  for (std::uint32_t i = 0; i < nodes_.size(); ++i) {
    const Node& n = nodes_[i];
    const NodeRuntime& rt = *n.runtime;
    // Only nodes whose one fault is a failed connect: not the operator's or the agent's choice,
    // not failed checks, not full.
    if (tried.contains(i) || rt.up() || rt.effective_state() != AdminState::available ||
        rt.check_down.load(std::memory_order_relaxed) ||
        rt.agent_down.load(std::memory_order_relaxed) ||
        (n.max_connections != 0 &&
         rt.active.load(std::memory_order_relaxed) >= std::int64_t{n.max_connections})) {
      continue;
    }
    const std::int64_t failed = rt.last_failure_ns.load(std::memory_order_relaxed);
    if (best < 0 || failed < best_failed) {
      best = static_cast<std::int32_t>(i);
      best_failed = failed;
    }
  }
  return best;
}

double Cluster::effective_load_factor(std::uint32_t node, std::int64_t now) const {
  const Node& n = nodes_[node];
  const NodeRuntime& rt = *n.runtime;
  double factor = n.load_factor;
  const std::uint32_t percent = rt.agent_weight_percent.load(std::memory_order_relaxed);
  if (percent != 100) factor = factor * static_cast<double>(percent) / 100.0;
  const std::int64_t ramp_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(config_.slow_start).count();
  const std::int64_t since = rt.eligible_since_ns.load(std::memory_order_relaxed);
  if (ramp_ns > 0 && since > 0 && now - since < ramp_ns) {
    const double elapsed = static_cast<double>(std::max<std::int64_t>(now - since, 0));
    factor *= 0.1 + 0.9 * elapsed / static_cast<double>(ramp_ns);
  }
  return factor;
}

void Cluster::restart_ramp(std::uint32_t node) {
  nodes_[node].runtime->eligible_since_ns.store(now_ns(), std::memory_order_relaxed);
}

void Cluster::on_check(std::uint32_t node, CheckResult result, std::string_view detail) {
  const auto& health = config_.health;
  if (!health) return;
  NodeRuntime& rt = *nodes_[node].runtime;
  const std::int64_t now = now_ns();
  rt.last_check.store(result, std::memory_order_relaxed);
  rt.last_check_ns.store(now, std::memory_order_relaxed);
  if (result == CheckResult::ok) {
    rt.checks_failed_in_row.store(0, std::memory_order_relaxed);
    const std::uint32_t passed = rt.checks_passed_in_row.fetch_add(1, std::memory_order_relaxed) + 1;
    const bool down = rt.check_down.load(std::memory_order_relaxed) || !rt.up();
    if (!down || passed < health->rise) return;
    if (rt.check_down.exchange(false, std::memory_order_relaxed)) {
      rt.check_changed_ns.store(now, std::memory_order_relaxed);
      spdlog::info("node {}/{} is up: {} check{} passed", name_, nodes_[node].name, passed,
                   passed == 1 ? "" : "s");
    }
    restart_ramp(node);
    mark_up(node);
    return;
  }
  rt.check_failures[static_cast<std::size_t>(result)].fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(rt.check_mutex);
    rt.last_check_failure_detail = detail;
  }
  rt.last_check_failure.store(result, std::memory_order_relaxed);
  rt.last_check_failure_ns.store(now, std::memory_order_relaxed);
  rt.checks_passed_in_row.store(0, std::memory_order_relaxed);
  const std::uint32_t failed = rt.checks_failed_in_row.fetch_add(1, std::memory_order_relaxed) + 1;
  if (failed < health->fall || rt.check_down.load(std::memory_order_relaxed)) return;
  rt.check_down.store(true, std::memory_order_relaxed);
  rt.check_changed_ns.store(now, std::memory_order_relaxed);
  spdlog::warn("node {}/{} is down: {} check{} failed, the last by {}{}{}", name_,
               nodes_[node].name, failed, failed == 1 ? "" : "s", to_string(result),
               detail.empty() ? "" : ": ", detail);
}

std::int32_t Cluster::follow_fallover(std::uint32_t from, const TriedSet& tried) const {
  // A chain visits at most every node once; validation refuses cycles, but a bound costs nothing.
  std::int32_t cur = nodes_[from].fallover;
  for (std::size_t steps = 0; cur >= 0 && steps < nodes_.size(); ++steps) {
    const auto node = static_cast<std::uint32_t>(cur);
    if (node == from) break;
    if (!tried.contains(node) && eligible(node)) return cur;
    cur = nodes_[node].fallover;
  }
  return -1;
}

bool Cluster::try_acquire(std::uint32_t node) {
  const Node& n = nodes_[node];
  auto& active = n.runtime->active;
  if (n.max_connections == 0) {
    active.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // Compare-exchange instead of add-then-check, so that workers racing for the last slots can
  // never push the node above its limit, not even for a moment.
  std::int64_t cur = active.load(std::memory_order_relaxed);
  do {
    if (cur >= std::int64_t{n.max_connections}) return false;
  } while (!active.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed));
  return true;
}

void Cluster::release(std::uint32_t node) {
  nodes_[node].runtime->active.fetch_sub(1, std::memory_order_relaxed);
}

void Cluster::on_connected(std::uint32_t node, std::chrono::nanoseconds connect_time) {
  NodeRuntime& rt = *nodes_[node].runtime;
  rt.total.fetch_add(1, std::memory_order_relaxed);

  // EWMA with alpha 0.2: follows a node that slows down within a few connections, yet one slow
  // handshake does not make it look bad. The first sample is taken as is.
  const auto sample = std::max<std::int64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(connect_time).count(), 0);
  std::int64_t old = rt.latency_ewma_us.load(std::memory_order_relaxed);
  std::int64_t updated = 0;
  do {
    updated = old < 0 ? sample
                      : old + static_cast<std::int64_t>(
                                  std::llround(0.2 * static_cast<double>(sample - old)));
  } while (!rt.latency_ewma_us.compare_exchange_weak(old, updated, std::memory_order_relaxed));
  rt.record_connect_time(connect_time);

  mark_up(node);
}

void Cluster::on_failed(std::uint32_t node, FailureReason reason) {
  NodeRuntime& rt = *nodes_[node].runtime;
  rt.failures[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  rt.last_failure_ns.store(now_ns(), std::memory_order_relaxed);
  // With checks, a node down by a failed connect comes back after `rise` passes from now on.
  if (config_.health) rt.checks_passed_in_row.store(0, std::memory_order_relaxed);
  mark_unavailable(node, reason);
}

void Cluster::on_probe(std::uint32_t node, bool ok) {
  if (ok) {
    mark_up(node);
    return;
  }
  const auto retry = std::chrono::duration_cast<std::chrono::nanoseconds>(config_.retry_interval);
  nodes_[node].runtime->next_probe_ns.store(now_ns() + retry.count(), std::memory_order_relaxed);
}

void Cluster::mark_up(std::uint32_t node) {
  NodeRuntime& rt = *nodes_[node].runtime;
  if (rt.up()) return;  // the common case, without a write to a shared cache line
  // exchange: of several workers seeing the node come back at once, exactly one logs it.
  if (rt.unavailable_since_ns.exchange(0, std::memory_order_relaxed) != 0) {
    rt.next_probe_ns.store(0, std::memory_order_relaxed);
    rt.eligible_since_ns.store(now_ns(), std::memory_order_relaxed);  // slow start begins
    spdlog::info("node {}/{} is up again", name_, nodes_[node].name);
    if (registry_->observer()) registry_->observer()(name_, nodes_[node].name, rt);
  }
}

void Cluster::mark_unavailable(std::uint32_t node, FailureReason reason) {
  NodeRuntime& rt = *nodes_[node].runtime;
  const std::int64_t now = now_ns();
  const auto retry = std::chrono::duration_cast<std::chrono::nanoseconds>(config_.retry_interval);
  // The probe time first, so that a prober that sees the node unavailable sees a valid time.
  rt.next_probe_ns.store(now + retry.count(), std::memory_order_relaxed);
  std::int64_t expected = 0;
  // Only the transition is logged: a node that is down fails every connection sent its way.
  if (rt.unavailable_since_ns.compare_exchange_strong(expected, now, std::memory_order_relaxed)) {
    if (config_.health) {
      spdlog::warn("node {}/{} unavailable: {}; back after {} passed check{}", name_,
                   nodes_[node].name, to_string(reason), config_.health->rise,
                   config_.health->rise == 1 ? "" : "s");
    } else {
      spdlog::warn("node {}/{} unavailable: {}; next probe in {}", name_, nodes_[node].name,
                   to_string(reason), config::format_duration(config_.retry_interval));
    }
    if (registry_->observer()) registry_->observer()(name_, nodes_[node].name, rt);
  }
}

}  // namespace pb::balance
