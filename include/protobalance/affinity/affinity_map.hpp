#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/affinity/entry_store.hpp"
#include "protobalance/affinity/shared_lookup.hpp"
#include "protobalance/config/config.hpp"

namespace pb::affinity {

// Which node serves which client, per cluster: the in-memory side of affinity, answering on the
// hot path for every worker thread. Entries are spread over kShards shards by the client key's
// hash, each with its own mutex, so workers rarely contend; no call touches the disk. Every
// change that must survive a restart is queued on the EntryStore (when there is one) under the
// shard's lock, so the database sees the changes of one client in the order they happened.
//
// Persistence grain: a new entry, a changed node, pin() and forget() are queued at once (the
// store commits them within about a second: a kill -9 loses at most that last second of new
// entries). last_seen and connections of an unchanged entry are queued only when the stored
// last_seen is older than `last_seen_grain` (default 60 s), so a busy client does not cause a
// write per connection. Hence last_seen in the database (and in pbadmin's list) may lag the
// truth by up to a minute, and an entry can be forgotten up to a minute early across a restart
// (the database expires it from its older last_seen).
//
// Memory: each (shard, cluster) pair holds an open-addressing table (linear probing, backward-
// shift deletion, no tombstones) of fixed 36-byte slots: the key's 16 bytes and prefix, the node
// as an index into the table's small node-name list, and times and counts as 32-bit values. With
// the table kept between 53% and 80% full that is 45-68 bytes per entry, and the load sizes the
// tables from the row count so a freshly loaded map is ~80% full. Slot arrays are mapped pages of
// their own (mmap), so growing a table gives the old array back to the system.
//
// Start-up: load_in_background() fills the map from the store on a thread of its own while the
// balancer already serves. Until it is done, a lookup that misses the map asks the database (an
// indexed point query bounded to about a millisecond, EntryStore::find_affinity) and keeps what it
// found, so a returning client goes to its node even before its entry was loaded.
class AffinityMap {
 public:
  static constexpr std::size_t kShards = 64;
  // How long a lookup may wait for the database while the map is loading.
  static constexpr std::chrono::microseconds kStoreLookupBudget{1000};

  // `store` may be null: no persistence (tests, quick mode).
  explicit AffinityMap(EntryStore* store,
                       std::chrono::seconds last_seen_grain = std::chrono::seconds(60));
  // Stops a load in progress.
  ~AffinityMap();
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

  // Who asked for a change: this balancer (an operator, a connection), or a twin (then the
  // observer is not told: the change is already shared).
  enum class Source : std::uint8_t { local, twin };

  // Sets the client's node by operator request, or as a twin decided it (creates the entry if
  // needed; last_seen moves forward only); written at once.
  void pin(std::string_view cluster, const ClientKey& key, std::string_view node,
           Clock::time_point now, Source source = Source::local);

  // Removes the client's entry; false when there was none (the store and the observer are told
  // either way, in case the database or a twin holds an entry the map does not).
  bool forget(std::string_view cluster, const ClientKey& key, Source source = Source::local);

  // Who is told of local decisions (twins); null = nobody. The observer must stay alive until
  // it is replaced and every call that may have read it has returned (the runtime keeps the
  // ones it replaced until it ends).
  void set_observer(AffinityObserver* observer) {
    observer_.store(observer, std::memory_order_release);
  }

  // Erases every entry expired at `now` under its cluster's TTL; returns how many. Call it every
  // few seconds so that clients that never come back do not hold memory.
  std::size_t sweep(Clock::time_point now, const TtlTable& ttls);

  // Fills the map from `rows` (rows whose client text does not parse are skipped). Entries the
  // map already holds are kept. Returns the number of entries added. Does not write to the store.
  std::size_t load(const std::vector<AffinityRow>& rows);

  // Starts loading the store's entries on a thread of its own and returns at once; logs the count
  // and the time when done. `hold`, when set, runs on that thread before it reads anything (a test
  // hook: block in it to keep the map loading). Without a store this does nothing.
  void load_in_background(std::function<void()> hold = {});
  // True from load_in_background() until the loading thread is done.
  bool loading() const { return loading_.load(std::memory_order_acquire); }
  // Waits until loading is done or `timeout` passed; true when done.
  bool wait_loaded(std::chrono::milliseconds timeout) const;

  // Number of entries (for the affinity_entries metric).
  std::size_t size() const { return size_.load(std::memory_order_relaxed); }

  // Every entry, for the admin API (order unspecified).
  std::vector<AffinityRow> snapshot() const;
  // The entries of `cluster` whose network overlaps `key` (order unspecified): what
  // `pbadmin affinity forget` removes, without copying the whole map.
  std::vector<AffinityRow> overlapping(std::string_view cluster, const ClientKey& key) const;

 private:
  // A slot of a table. `tag` 0 = empty, else prefix + 1.
  struct Slot {
    std::array<std::uint8_t, 16> bytes;
    std::uint8_t tag;
    std::uint8_t unused;
    std::uint16_t node;  // index into Table::nodes
    std::uint32_t first_seen;  // unix seconds
    std::uint32_t last_seen;
    std::uint32_t stored_last_seen;  // last_seen of the last row queued for the store
    std::uint32_t connections;       // saturates
  };
  static_assert(sizeof(Slot) == 36);

  // The entries of one cluster in one shard.
  class Table {
   public:
    Table() = default;
    ~Table();
    Table(const Table&) = delete;
    Table& operator=(const Table&) = delete;

    Slot* find(const ClientKey& key, std::size_t hash);
    // The slot for `key`, empty (tag 0) when it was not there: the caller fills it in.
    Slot& insert(const ClientKey& key, std::size_t hash);
    void erase(Slot& slot);
    // Makes room for `count` entries in all without growing.
    void reserve(std::size_t count);
    std::uint16_t node_index(std::string_view name);
    const std::string& node_name(std::uint16_t index) const { return nodes_[index]; }
    std::size_t size() const { return count_; }
    std::size_t capacity() const { return capacity_; }
    Slot* slots() { return slots_; }
    const Slot* slots() const { return slots_; }

   private:
    std::size_t home(std::size_t hash) const;
    void rehash(std::size_t capacity);

    Slot* slots_ = nullptr;
    std::size_t capacity_ = 0;
    std::size_t count_ = 0;
    std::vector<std::string> nodes_;
  };

  // alignas: shards locked by different workers must not share a cache line.
  struct alignas(64) Shard {
    mutable std::mutex mutex;
    std::map<std::string, Table, std::less<>> clusters;  // few clusters: a small tree
  };

  static ClientKey slot_key(const Slot& slot);
  Shard& shard_for(std::size_t hash);
  Table& table_for(Shard& shard, std::string_view cluster);
  // The client's entry in `cluster` (created empty and counted when new: `second` is true).
  // Call with the shard's mutex held.
  std::pair<Slot&, bool> find_or_add(Shard& shard, std::string_view cluster, const ClientKey& key,
                                     std::size_t hash);
  void store_put(std::string_view cluster, const ClientKey& key, Table& table, Slot& slot);
  void store_erase(std::string_view cluster, const ClientKey& key);
  // Adds an entry read from the database unless the map has one (or it was forgotten since the
  // load began). Returns true when added.
  bool add_loaded(std::string_view cluster, const ClientKey& key, std::string_view node,
                  std::int64_t first_seen, std::int64_t last_seen, std::int64_t connections);
  void run_load(const std::function<void()>& hold);

  EntryStore* store_;
  std::atomic<AffinityObserver*> observer_{nullptr};
  std::int64_t grain_s_;
  std::array<Shard, kShards> shards_;
  std::atomic<std::size_t> size_{0};

  std::atomic<bool> loading_{false};
  std::atomic<bool> stop_loading_{false};
  mutable std::mutex loaded_mutex_;
  mutable std::condition_variable loaded_;
  // Clients forgotten while loading (cluster + key blob): the load must not bring them back.
  std::atomic<bool> any_forgotten_{false};
  std::mutex forgotten_mutex_;
  std::vector<std::pair<std::string, ClientKey>> forgotten_;
  std::thread loader_;
};

// The test hook of the daemon: when the environment variable PB_TEST_AFFINITY_LOAD_HOLD names a
// file, a function that waits (at most 60 s) until that file no longer exists; else an empty
// function. Integration tests use it to keep the map loading while a client connects.
std::function<void()> load_hold_from_environment();

}  // namespace pb::affinity
