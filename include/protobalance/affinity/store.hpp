#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/config/config.hpp"

namespace SQLite {
class Database;
}  // namespace SQLite

namespace pb::affinity {

using Clock = std::chrono::system_clock;

// One row of the affinity table. Times are unix seconds (UTC).
struct AffinityRow {
  std::string cluster;
  std::string client;  // ClientKey::to_string()
  std::string node;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t connections = 0;

  friend bool operator==(const AffinityRow&, const AffinityRow&) = default;
};

// Persisted run-time state of one node.
struct NodeStateRow {
  std::string cluster;
  std::string node;
  std::string admin_state;                // available|draining|offline; empty = none set
  std::int64_t unavailable_since_ms = 0;  // unix milliseconds; 0 = up
  std::int64_t failures = 0;

  friend bool operator==(const NodeStateRow&, const NodeStateRow&) = default;
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

// An affinity entry as the database holds it, found by Store::find_affinity().
struct StoredEntry {
  std::string node;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t connections = 0;
};

// One row streamed by Store::for_each_affinity() and read_affinity_file(); the views are valid
// during the call only.
struct AffinityRowView {
  std::string_view cluster;
  ClientKey key;
  std::string_view node;
  std::int64_t first_seen = 0;
  std::int64_t last_seen = 0;
  std::int64_t connections = 0;
};

// Thrown by Store's constructor (and read_affinity_file) when the database was written by a newer
// release: its schema (PRAGMA user_version) is beyond the migrations this binary knows, so using
// it could lose or misread data.
class SchemaTooNew : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The changes the store writes, in the order they were enqueued.
struct PutAffinity {
  AffinityRow row;
};
struct EraseAffinity {
  std::string cluster;
  std::string client;
};
struct PutAdminState {
  std::string cluster;
  std::string node;
  std::string admin_state;  // empty = none set (the config's initial state applies again)
};
struct PutAvailability {
  std::string cluster;
  std::string node;
  std::int64_t unavailable_since_ms = 0;
  std::int64_t failures = 0;
};
// A listener redirected at run time (`pbadmin route`); an empty cluster removes the override.
struct PutRoute {
  std::string listener;
  std::string cluster;
  std::int64_t set_at = 0;  // unix seconds
};
using Change = std::variant<PutAffinity, EraseAffinity, PutAdminState, PutAvailability, PutRoute>;

struct StoreOptions {
  // The writer commits what is queued at least this often: the most a kill -9 can lose.
  std::chrono::milliseconds flush_interval{1000};
  // ... and sooner when this many changes are waiting, to keep transactions small.
  std::size_t batch_threshold = 4096;
  // Expired rows are deleted this often (the contract: within 10 s of expiring).
  std::chrono::milliseconds expiry_interval{5000};
  // After a failure, opening and writing are retried this often.
  std::chrono::milliseconds retry_interval{5000};
  // Changes kept while the database cannot be written; beyond, the oldest are dropped.
  std::size_t max_queue = 262'144;
  // One write transaction holds at most this many changes (a batch is split), and one expiry
  // step scans at most expiry_chunk rows, so neither holds the database for more than a few
  // tens of milliseconds even at ten million entries.
  std::size_t max_transaction = 4096;
  std::size_t expiry_chunk = 20'000;
  // Expiry steps per expiry_interval: a large table is swept over several intervals (a cursor
  // remembers where the last step stopped), keeping the writer's background cost bounded.
  std::size_t expiry_steps = 8;
  // How long one statement waits for a lock held by another connection.
  std::chrono::milliseconds busy_timeout{5000};
};

// The SQLite file `state_dir/protobalance.db` and the one thread that writes it.
//
// Worker threads never wait for the disk: enqueue() only appends to a queue in memory; the
// writer thread commits the queue in one transaction at least every flush_interval. Faults never
// reach the caller: when the database cannot be opened or written (missing or read-only
// directory, disk full, locked by another process) the store logs the cause once at error
// level, counts write_errors(), keeps the changes queued (bounded by max_queue) and retries
// every retry_interval. A corrupt file is renamed to protobalance.db.corrupt-YYYYmmddTHHMMSSZ
// (with its -wal and -shm) and a fresh database is created; the rows it held are gone from disk,
// and come back as the balancer writes them again (see AffinityMap::record).
//
// Opening (in the constructor) applies the embedded migrations in order, each in its own
// transaction, tracked with PRAGMA user_version; the database runs in WAL mode with
// synchronous=NORMAL, so a committed batch survives a crash of the process (not necessarily a
// power loss), and pbadmin can read while the balancer writes.
class Store {
 public:
  static constexpr std::string_view kFileName = "protobalance.db";
  // Files up to this size are checked (quick_check) when opened; larger ones after the start.
  static constexpr std::uintmax_t kQuickCheckAtOpenBytes = 32 * 1024 * 1024;

  // Creates state_dir if needed and opens the database. Never throws for database problems:
  // the store then starts without persistence and retries in the background.
  explicit Store(std::filesystem::path state_dir, StoreOptions options = {});
  // Commits what is queued (one last attempt), then stops the writer thread.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Affinity rows at start-up, without the expired ones (under set_ttls(); without TTLs every
  // row). Empty when the database cannot be read.
  std::vector<AffinityRow> load_affinity();
  // Streams the unexpired affinity rows, in (cluster, client) order, through a read-only
  // connection of its own: the writer keeps writing meanwhile. `fn` returns false to stop.
  // Returns the number of rows passed to `fn`; rows whose client is not a valid key are skipped
  // and counted in `*skipped`.
  std::size_t for_each_affinity(const std::function<bool(const AffinityRowView&)>& fn,
                                std::size_t* skipped = nullptr);
  // Rows per cluster (for sizing the map before loading).
  std::map<std::string, std::size_t, std::less<>> count_affinity();
  // The stored entry of one client: an indexed point query on a pooled read-only connection,
  // abandoned (nullopt) when it takes longer than `budget` or the database cannot be read.
  // Thread-safe; used while the map is still loading.
  std::optional<StoredEntry> find_affinity(std::string_view cluster, const ClientKey& key,
                                           std::chrono::microseconds budget);
  std::vector<NodeStateRow> load_node_states();
  // Route overrides: listener -> cluster.
  std::map<std::string, std::string> load_routes();

  // Replaces the TTLs the writer uses to delete expired rows (at start and on reload).
  void set_ttls(TtlTable ttls);

  // Queues a change for the writer thread. Non-blocking apart from a short mutex; never fails.
  void enqueue(Change change);

  // Blocks until every change queued before the call has been committed, or its write failed
  // (it then stays queued for the next retry).
  void flush();

  // True when the database is open and the last write succeeded.
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  // Failed attempts to open or write the database, since start.
  std::uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }
  // Changes dropped because the queue was full while the database could not be written.
  std::uint64_t dropped_changes() const { return dropped_.load(std::memory_order_relaxed); }
  std::size_t queued() const;

 private:
  struct Reader;
  void run();
  // The members below run with db_mutex_ held.
  // `refuse_newer`: a database of a newer schema throws SchemaTooNew (at construction).
  bool ensure_open(bool refuse_newer = false);
  void open_and_migrate();
  // Closes the connection and renames the file (and its -wal, -shm) aside; false when the
  // rename failed.
  bool recover_from_corruption(std::string_view what);
  // PRAGMA quick_check: throws (as corruption) when the file is damaged.
  static void quick_check(SQLite::Database& db);
  // The check of a file too large to check at open, run once by the writer thread.
  void deferred_quick_check();
  bool write_batch(const std::vector<Change>& batch, bool retry_on_fresh);
  // Writes batch[begin, end) in one transaction; throws on failure.
  void write_transaction(const std::vector<Change>& batch, std::size_t begin, std::size_t end);
  // Deletes expired rows in bounded steps from the cursor; `all` runs until the table is done.
  void delete_expired(const TtlTable& ttls, bool all = false);
  // One bounded step: false when the cursor reached the end of the table.
  bool delete_expired_step(const TtlTable& ttls, Clock::time_point now);
  // Records a failure: closes the connection (the retry reopens it), counts it, and logs it
  // unless it is the same cause as the previous failure.
  void fail(std::string_view what, const std::exception& e);
  void succeeded();
  std::optional<TtlTable> ttls() const;

  std::filesystem::path state_dir_;
  std::filesystem::path path_;
  StoreOptions options_;

  std::mutex db_mutex_;  // the connection is used by the writer and, at start-up, by load_*()
  std::unique_ptr<SQLite::Database> db_;
  std::string last_cause_;  // of the last logged failure; empty while healthy
  bool check_pending_ = false;  // the file was too large to check at open
  // Where the expiry sweep continues: the last (cluster, client blob) it covered; empty cluster
  // = from the start.
  std::string expiry_cluster_;
  std::vector<std::uint8_t> expiry_client_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<Reader>> readers_;  // idle read-only connections (find_affinity)

  mutable std::mutex ttl_mutex_;
  std::optional<TtlTable> ttls_;

  mutable std::mutex queue_mutex_;
  std::condition_variable wake_;     // the writer waits on it
  std::condition_variable written_;  // flush() waits on it
  std::deque<Change> queue_;
  // Write attempts of the writer thread: one takes the whole queue. flush() waits for one that
  // begins after it was called.
  std::uint64_t attempts_begun_ = 0;
  std::uint64_t attempts_done_ = 0;
  bool flush_requested_ = false;
  bool stopping_ = false;
  bool warned_full_ = false;

  std::atomic<bool> healthy_{false};
  std::atomic<std::uint64_t> write_errors_{0};
  std::atomic<std::uint64_t> dropped_{0};

  std::thread writer_;  // last: starts after everything above is initialised
};

// Reads the affinity rows of the database file `db_file` read-only (pbadmin; works while the
// balancer writes in WAL mode, and while it is down). `cluster` and `node` filter when not
// empty. Returns nullopt when the file does not exist or holds no affinity table yet.
// Throws std::runtime_error ("PATH: reason") when the file cannot be read.
std::optional<std::vector<AffinityRow>> read_affinity_file(const std::filesystem::path& db_file,
                                                           std::string_view cluster = {},
                                                           std::string_view node = {});

// What read_affinity_file() streams: every row of `cluster` (all when empty) and `node` (all when
// empty) whose client overlaps `client` (all when nullopt): a network's entries are one range of
// the index, and the entries containing an address are point look-ups. Rows come in (cluster,
// client) order, one at a time, so memory stays flat. Returns false when the file does not exist
// or holds no affinity table; throws std::runtime_error ("PATH: reason") when it cannot be read,
// SchemaTooNew when a newer release wrote it.
bool stream_affinity_file(const std::filesystem::path& db_file, std::string_view cluster,
                          std::string_view node, const std::optional<ClientKey>& client,
                          const std::function<void(const AffinityRowView&)>& fn);

}  // namespace pb::affinity
