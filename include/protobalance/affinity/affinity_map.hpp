#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/affinity/store.hpp"
#include "protobalance/config/config.hpp"

namespace pb::affinity {

// Which node serves which client, per cluster: the in-memory side of affinity, answering on the
// hot path for every worker thread. Entries are spread over kShards shards by the client key's
// hash, each with its own mutex, so workers rarely contend; no call touches the disk. Every
// change that must survive a restart is queued on the Store (when there is one) under the
// shard's lock, so the database sees the changes of one client in the order they happened.
//
// Persistence grain: a new entry, a changed node, pin() and forget() are queued at once (the
// store commits them within about a second: a kill -9 loses at most that last second of new
// entries). last_seen and connections of an unchanged entry are queued only when the stored
// last_seen is older than `last_seen_grain` (default 60 s), so a busy client does not cause a
// write per connection. Hence last_seen in the database (and in pbadmin's list) may lag the
// truth by up to a minute, and an entry can be forgotten up to a minute early across a restart
// (the database expires it from its older last_seen).
class AffinityMap {
 public:
  static constexpr std::size_t kShards = 64;

  // `store` may be null: no persistence (tests, quick mode).
  explicit AffinityMap(Store* store,
                       std::chrono::seconds last_seen_grain = std::chrono::seconds(60));
  AffinityMap(const AffinityMap&) = delete;
  AffinityMap& operator=(const AffinityMap&) = delete;

  // The node of the client's entry in `cluster`, unless the entry is older than `ttl` at `now`:
  // an expired entry is never returned; it is erased here and deleted from the store.
  std::optional<std::string> lookup(std::string_view cluster, const ClientKey& key,
                                    Clock::time_point now, config::Duration ttl);

  // `node` served a connection of the client: creates the entry (first_seen = now) or moves it
  // to `node`; counts the connection and sets last_seen = now.
  void record(std::string_view cluster, const ClientKey& key, std::string_view node,
              Clock::time_point now);

  // Sets the client's node by operator request (creates the entry if needed); written at once.
  void pin(std::string_view cluster, const ClientKey& key, std::string_view node,
           Clock::time_point now);

  // Removes the client's entry; false when there was none (the store is told either way, in
  // case the database holds a row the map does not).
  bool forget(std::string_view cluster, const ClientKey& key);

  // Erases every entry expired at `now` under its cluster's TTL; returns how many. Call it every
  // few seconds so that clients that never come back do not hold memory.
  std::size_t sweep(Clock::time_point now, const TtlTable& ttls);

  // Fills the map at start from the store's rows; rows whose client text does not parse are
  // skipped. Returns the number of entries loaded. Does not write to the store.
  std::size_t load(const std::vector<AffinityRow>& rows);

  // Number of entries (for the affinity_entries metric).
  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

  // Every entry, for the admin API (order unspecified).
  std::vector<AffinityRow> snapshot() const;

 private:
  struct Entry {
    std::string node;
    std::int64_t first_seen = 0;  // unix seconds, as stored
    std::int64_t last_seen = 0;
    std::int64_t stored_last_seen = 0;  // last_seen of the last row queued for the store
    std::int64_t connections = 0;
  };
  using Clients = std::unordered_map<ClientKey, Entry, ClientKeyHash>;

  // alignas: shards locked by different workers must not share a cache line.
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::map<std::string, Clients, std::less<>> clusters;  // few clusters: a small tree
  };

  Shard& shard_for(const ClientKey& key);
  // The client's entry in `cluster` (created empty and counted when new: `second` is true).
  // Call with the shard's mutex held.
  std::pair<Entry&, bool> find_or_add(Shard& shard, std::string_view cluster, const ClientKey& key);
  void store_put(std::string_view cluster, const ClientKey& key, Entry& entry);
  void store_erase(std::string_view cluster, const ClientKey& key);

  Store* store_;
  std::int64_t grain_s_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> size_{0};
};

}  // namespace pb::affinity
