#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/config/config.hpp"

namespace pb::affinity {

using Clock = std::chrono::system_clock;

// One affinity entry as it is persisted. Times are unix seconds (UTC).
struct AffinityRow {
  std::string cluster;
  std::string client;  // ClientKey::to_string()
  std::string node;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t connections = 0;

  friend bool operator==(const AffinityRow&, const AffinityRow&) = default;
};

// The affinity time-to-live of each cluster. Clusters not listed (removed from the
// configuration since their rows were written) use `fallback`, so their rows do not stay forever.
struct TtlTable {
  std::map<std::string, config::Duration, std::less<>> by_cluster;
  config::Duration fallback = config::AffinityConfig{}.ttl;

  config::Duration ttl_for(std::string_view cluster) const;
};

// The TTL of every cluster of `cfg` (its [cluster.affinity] ttl, also when affinity is off:
// that is the default 30d unless set).
TtlTable make_ttl_table(const config::Config& cfg);

// Entries whose last_seen (unix seconds) is below the returned value have expired at `now`.
// last_seen is cut to whole seconds, so an entry's age is counted from the start of its second:
// an entry is forgotten up to a second early, never late. The map and the database use this one
// rule, so they agree on what is expired.
std::int64_t expiry_cutoff(Clock::time_point now, config::Duration ttl);

// An entry as the store holds it, found by EntryStore::find_affinity().
struct StoredEntry {
  std::string node;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t connections = 0;
};

// One entry streamed by EntryStore::for_each_affinity(); the views are valid during the call
// only.
struct AffinityRowView {
  std::string_view cluster;
  ClientKey key;
  std::string_view node;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t connections = 0;
};

// Where the affinity map keeps its entries across restarts: the map knows only this interface,
// so the affinity area needs no database (the SQLite implementation is state::Store).
// Implementations are thread-safe; put and erase only queue the change and never wait for a disk.
class EntryStore {
 public:
  virtual ~EntryStore() = default;

  // Queues the entry to be written (a whole row: replaces the stored one).
  virtual void put_affinity(AffinityRow row) = 0;
  // Queues the deletion of the client's entry in `cluster`.
  virtual void erase_affinity(std::string cluster, std::string client) = 0;
  // The stored entry of one client, or nullopt when there is none, when the look-up takes
  // longer than `budget` or when the store cannot be read.
  virtual std::optional<StoredEntry> find_affinity(std::string_view cluster, const ClientKey& key,
                                                   std::chrono::microseconds budget) = 0;
  // Stored entries per cluster (a hint for sizing the map before loading).
  virtual std::map<std::string, std::size_t, std::less<>> count_affinity() = 0;
  // Streams the unexpired entries in (cluster, client) order; `fn` returns false to stop.
  // Returns the number of entries passed to `fn`; entries whose client is not a valid key are
  // skipped and counted in `*skipped`.
  virtual std::size_t for_each_affinity(const std::function<bool(const AffinityRowView&)>& fn,
                                        std::size_t* skipped) = 0;
  // Where the entries are kept, for log messages (a file name).
  virtual std::string location() const = 0;

 protected:
  EntryStore() = default;
  EntryStore(const EntryStore&) = default;
  EntryStore& operator=(const EntryStore&) = default;
};

}  // namespace pb::affinity
