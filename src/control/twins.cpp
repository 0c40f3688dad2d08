#include "protobalance/control/twins.hpp"

#include <utility>

#include <spdlog/spdlog.h>

namespace pb::control {

namespace {

// The link's client key: the map's 17-byte database form.
std::string key_bytes(const affinity::ClientKey& key) {
  const auto blob = key.to_blob();
  return {reinterpret_cast<const char*>(blob.data()), blob.size()};
}

std::optional<affinity::ClientKey> key_of(const std::string& bytes) {
  return affinity::ClientKey::from_blob(bytes.data(), bytes.size());
}

}  // namespace

bool same_twin_config(const config::TwinConfig& a, const config::TwinConfig& b) {
  return a.enabled == b.enabled && a.redis == b.redis && a.host == b.host && a.port == b.port &&
         a.unix_socket == b.unix_socket && a.password_file == b.password_file &&
         a.database == b.database && a.key_prefix == b.key_prefix && a.instance == b.instance &&
         a.lookup_timeout == b.lookup_timeout;
}

Twins::Twins(const config::Config& cfg, affinity::AffinityMap& map, Apply apply)
    : config_(cfg.twin), map_(map), apply_(std::move(apply)), ttls_(affinity::make_ttl_table(cfg)) {
  state::TwinCallbacks callbacks;
  callbacks.on_message = [this](const state::TwinMessage& m) { on_message(m); };
  callbacks.on_conflict = [this](const state::AffinityEntry& winner) { on_conflict(winner); };
  callbacks.snapshot = [this](const std::function<void(const state::AffinityEntry&)>& emit) {
    list_entries(emit);
  };
  callbacks.on_reread = [this](const state::BlocksRead& read) {
    if (apply_.blocks_read) apply_.blocks_read(read);
  };
  spdlog::info("twin: sharing affinity, node states, routes and blocks through Redis at {} as '{}'",
               config_.redis, config_.instance);
  link_ = std::make_unique<state::TwinLink>(config_, std::move(callbacks));
}

Twins::~Twins() { stop(); }

void Twins::stop() {
  std::unique_ptr<state::TwinLink> link;
  {
    std::unique_lock lock(link_mutex_);
    link = std::move(link_);
  }
  // Joined outside the lock: a link thread may be in a callback that publishes.
  link.reset();
}

void Twins::set_clusters(const config::Config& cfg) {
  std::lock_guard lock(clusters_mutex_);
  ttls_ = affinity::make_ttl_table(cfg);
}

std::optional<std::chrono::seconds> Twins::ttl_of(std::string_view cluster) const {
  std::lock_guard lock(clusters_mutex_);
  const auto it = ttls_.by_cluster.find(cluster);
  if (it == ttls_.by_cluster.end()) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::seconds>(it->second);
}

bool Twins::lookup(std::string_view cluster, const affinity::ClientKey& key, Done done) {
  std::shared_lock lock(link_mutex_);
  if (!link_) return false;
  link_->lookup_affinity(std::string(cluster), key_bytes(key), config_.lookup_timeout,
                         [done = std::move(done)](const state::LookupResult& result) {
                           if (result.status == state::LookupResult::Status::hit) {
                             done(result.node);
                           } else {
                             done(std::nullopt);
                           }
                         });
  return true;
}

// A first decision is written only if no twin wrote one first (the loser is told through
// on_conflict); a moved entry (its node draining, offline or removed) replaces the shared one.
void Twins::decided(std::string_view cluster, const affinity::ClientKey& key,
                    std::string_view node, affinity::Clock::time_point now, bool moved) {
  const auto ttl = ttl_of(cluster);
  if (!ttl) return;
  const state::AffinityEntry entry{std::string(cluster), key_bytes(key), std::string(node), now,
                                   *ttl};
  std::shared_lock lock(link_mutex_);
  if (!link_) return;
  if (moved) {
    link_->publish_pin(entry);
  } else {
    link_->publish_affinity(entry);
  }
}

void Twins::pinned(std::string_view cluster, const affinity::ClientKey& key,
                   std::string_view node, affinity::Clock::time_point now) {
  const auto ttl = ttl_of(cluster);
  if (!ttl) return;
  std::shared_lock lock(link_mutex_);
  if (link_) {
    link_->publish_pin({std::string(cluster), key_bytes(key), std::string(node), now, *ttl});
  }
}

void Twins::forgotten(std::string_view cluster, const affinity::ClientKey& key) {
  std::shared_lock lock(link_mutex_);
  if (link_) link_->publish_forget(std::string(cluster), key_bytes(key));
}

void Twins::publish_node_state(const std::string& cluster, const std::string& node,
                               config::AdminState state) {
  std::shared_lock lock(link_mutex_);
  if (link_) link_->publish_node_state(cluster, node, std::string(config::to_string(state)));
}

void Twins::publish_route(const std::string& listener, const std::string& cluster) {
  std::shared_lock lock(link_mutex_);
  if (link_) link_->publish_route(listener, cluster);
}

void Twins::publish_block(const std::string& subject, std::chrono::system_clock::time_point until) {
  std::shared_lock lock(link_mutex_);
  if (link_) link_->publish_block(subject, until);
}

void Twins::publish_unblock(const std::string& subject) {
  std::shared_lock lock(link_mutex_);
  if (link_) link_->publish_unblock(subject);
}

std::optional<state::TwinStats> Twins::stats() const {
  std::shared_lock lock(link_mutex_);
  if (!link_) return std::nullopt;
  return link_->stats();
}

// A twin's change, or a record the re-read after an outage found. On a link thread.
void Twins::on_message(const state::TwinMessage& m) {
  using Kind = state::TwinMessage::Kind;
  switch (m.kind) {
    case Kind::affinity:
    case Kind::pin:
    case Kind::forget: {
      const auto key = key_of(m.affinity.key);
      if (!key || !ttl_of(m.affinity.cluster)) {
        spdlog::debug("twin: {} sent an affinity entry for an unknown cluster or client; ignored",
                      m.instance);
        return;
      }
      if (m.kind == Kind::forget) {
        if (map_.forget(m.affinity.cluster, *key, affinity::AffinityMap::Source::twin)) {
          spdlog::info("twin: client {} forgotten in cluster {} (by {})", key->to_string(),
                       m.affinity.cluster, m.instance);
        }
      } else {
        map_.pin(m.affinity.cluster, *key, m.affinity.node, m.affinity.last_seen,
                 affinity::AffinityMap::Source::twin);
        // Also every client moved off a draining node: not worth a line each at info.
        spdlog::debug("twin: client {} goes to {}/{} (set by {})", key->to_string(),
                      m.affinity.cluster, m.affinity.node, m.instance);
      }
      return;
    }
    case Kind::node_state: {
      const auto state = config::parse_admin_state(m.state);
      if (!state) return;
      if (apply_.node_state) apply_.node_state(m.cluster, m.node, *state);
      return;
    }
    case Kind::route:
      if (apply_.route) apply_.route(m.name, m.target);
      return;
    case Kind::block:
      if (apply_.block) apply_.block(m.name, m.until);
      return;
    case Kind::unblock:
      if (apply_.unblock) apply_.unblock(m.name);
      return;
  }
}

// Our decision lost the race for a new client: the winner's node is the client's from its next
// connection on.
void Twins::on_conflict(const state::AffinityEntry& winner) {
  const auto key = key_of(winner.key);
  if (!key || !ttl_of(winner.cluster)) return;
  spdlog::info("twin: client {} of cluster {} goes to {} (a twin decided first)", key->to_string(),
               winner.cluster, winner.node);
  map_.pin(winner.cluster, *key, winner.node, winner.last_seen,
           affinity::AffinityMap::Source::twin);
}

// What this balancer holds, published again after Redis came back (it may have restarted
// empty, and decisions were taken alone meanwhile).
void Twins::list_entries(const std::function<void(const state::AffinityEntry&)>& emit) {
  for (const auto& row : map_.snapshot()) {
    const auto key = affinity::parse_client(row.client);
    const auto ttl = ttl_of(row.cluster);
    if (!key || !ttl) continue;
    emit({row.cluster, key_bytes(*key), row.node,
          affinity::Clock::time_point(std::chrono::seconds(row.last_seen)), *ttl});
  }
}

}  // namespace pb::control
