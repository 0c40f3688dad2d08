#include "protobalance/affinity/affinity_map.hpp"

#include <spdlog/spdlog.h>

namespace pb::affinity {
namespace {

std::int64_t unix_seconds(Clock::time_point t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

AffinityMap::AffinityMap(Store* store, std::chrono::seconds last_seen_grain)
    : store_(store), grain_s_(last_seen_grain.count()) {}

AffinityMap::Shard& AffinityMap::shard_for(const ClientKey& key) {
  // The top bits: the buckets inside a shard use the low ones.
  static_assert(kShards == 64);
  return shards_[ClientKeyHash{}(key) >> (sizeof(std::size_t) * 8 - 6)];
}

void AffinityMap::store_put(std::string_view cluster, const ClientKey& key, Entry& entry) {
  entry.stored_last_seen = entry.last_seen;
  if (store_ == nullptr) return;
  store_->enqueue(PutAffinity{AffinityRow{std::string(cluster), key.to_string(), entry.node,
                                          entry.first_seen, entry.last_seen, entry.connections}});
}

void AffinityMap::store_erase(std::string_view cluster, const ClientKey& key) {
  if (store_ == nullptr) return;
  store_->enqueue(EraseAffinity{std::string(cluster), key.to_string()});
}

std::optional<std::string> AffinityMap::lookup(std::string_view cluster, const ClientKey& key,
                                               Clock::time_point now, config::Duration ttl) {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  const auto c = shard.clusters.find(cluster);
  if (c == shard.clusters.end()) return std::nullopt;
  const auto it = c->second.find(key);
  if (it == c->second.end()) return std::nullopt;
  if (it->second.last_seen < expiry_cutoff(now, ttl)) {
    c->second.erase(it);
    size_.fetch_sub(1, std::memory_order_relaxed);
    store_erase(cluster, key);
    return std::nullopt;
  }
  return it->second.node;
}

std::pair<AffinityMap::Entry&, bool> AffinityMap::find_or_add(Shard& shard,
                                                               std::string_view cluster,
                                                               const ClientKey& key) {
  auto c = shard.clusters.find(cluster);
  if (c == shard.clusters.end()) c = shard.clusters.emplace(std::string(cluster), Clients{}).first;
  auto [it, inserted] = c->second.try_emplace(key);
  if (inserted) size_.fetch_add(1, std::memory_order_relaxed);
  return {it->second, inserted};
}

void AffinityMap::record(std::string_view cluster, const ClientKey& key, std::string_view node,
                         Clock::time_point now) {
  const std::int64_t t = unix_seconds(now);
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto [entry, inserted] = find_or_add(shard, cluster, key);
  if (inserted) {
    entry = Entry{std::string(node), t, t, t, 1};
    store_put(cluster, key, entry);
    return;
  }
  entry.connections += 1;
  entry.last_seen = std::max(entry.last_seen, t);
  if (entry.node != node) {
    entry.node = node;
    store_put(cluster, key, entry);
  } else if (entry.last_seen - entry.stored_last_seen >= grain_s_) {
    store_put(cluster, key, entry);
  }
}

void AffinityMap::pin(std::string_view cluster, const ClientKey& key, std::string_view node,
                      Clock::time_point now) {
  const std::int64_t t = unix_seconds(now);
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto [entry, inserted] = find_or_add(shard, cluster, key);
  if (inserted) entry.first_seen = t;
  entry.node = node;
  // A pin counts as use: the entry lives a full TTL from now even if the client is quiet.
  entry.last_seen = std::max(entry.last_seen, t);
  store_put(cluster, key, entry);
}

bool AffinityMap::forget(std::string_view cluster, const ClientKey& key) {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  bool found = false;
  if (const auto c = shard.clusters.find(cluster); c != shard.clusters.end()) {
    found = c->second.erase(key) > 0;
    if (found) size_.fetch_sub(1, std::memory_order_relaxed);
  }
  store_erase(cluster, key);
  return found;
}

std::size_t AffinityMap::sweep(Clock::time_point now, const TtlTable& ttls) {
  std::size_t erased = 0;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (auto& [cluster, clients] : shard.clusters) {
      const std::int64_t cutoff = expiry_cutoff(now, ttls.ttl_for(cluster));
      for (auto it = clients.begin(); it != clients.end();) {
        if (it->second.last_seen < cutoff) {
          // The store deletes expired rows by itself too; telling it keeps the two in step even
          // if its TTLs differ from the caller's.
          store_erase(cluster, it->first);
          it = clients.erase(it);
          ++erased;
        } else {
          ++it;
        }
      }
    }
  }
  size_.fetch_sub(erased, std::memory_order_relaxed);
  return erased;
}

std::size_t AffinityMap::load(const std::vector<AffinityRow>& rows) {
  std::size_t loaded = 0;
  std::size_t skipped = 0;
  for (const AffinityRow& row : rows) {
    const auto key = parse_client(row.client);
    if (!key) {
      ++skipped;
      continue;
    }
    Shard& shard = shard_for(*key);
    std::lock_guard lock(shard.mutex);
    auto c = shard.clusters.find(row.cluster);
    if (c == shard.clusters.end()) c = shard.clusters.emplace(row.cluster, Clients{}).first;
    auto [it, inserted] = c->second.insert_or_assign(
        *key, Entry{row.node, row.first_seen, row.last_seen, row.last_seen, row.connections});
    if (inserted) {
      size_.fetch_add(1, std::memory_order_relaxed);
      ++loaded;
    }
  }
  if (skipped > 0) {
    spdlog::warn("affinity: skipped {} stored entries whose client is not an address", skipped);
  }
  return loaded;
}

std::vector<AffinityRow> AffinityMap::snapshot() const {
  std::vector<AffinityRow> rows;
  rows.reserve(size());
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [cluster, clients] : shard.clusters) {
      for (const auto& [key, entry] : clients) {
        rows.push_back(AffinityRow{cluster, key.to_string(), entry.node, entry.first_seen,
                                   entry.last_seen, entry.connections});
      }
    }
  }
  return rows;
}

}  // namespace pb::affinity
