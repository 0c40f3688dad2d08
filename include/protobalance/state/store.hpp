#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/affinity/entry_store.hpp"
#include "protobalance/state/affinity_table.hpp"
#include "protobalance/state/block_table.hpp"
#include "protobalance/state/database.hpp"
#include "protobalance/state/node_state_table.hpp"
#include "protobalance/state/route_table.hpp"
#include "protobalance/state/write_behind.hpp"

namespace pb::state {

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

// The balancer's persistent state, `state_dir/protobalance.db`: the database (open, migrate,
// recover: database.hpp), its write-behind queue and writer thread (write_behind.hpp), and its
// tables (affinity, node states, route overrides, blocks). The affinity map reaches it only through
// affinity::EntryStore.
//
// Worker threads never wait for the disk: changes are queued and committed by the writer thread
// at least every flush_interval. Faults never reach the caller: when the database cannot be
// opened or written, the store runs without persistence, keeps the changes queued (bounded) and
// retries every retry_interval (see Database and WriteBehind for the details).
class Store final : public affinity::EntryStore {
 public:
  static constexpr std::string_view kFileName = Database::kFileName;

  // Creates state_dir if needed and opens the database. Throws SchemaTooNew when a newer
  // release wrote it; never throws for other database problems: the store then starts without
  // persistence and retries in the background.
  explicit Store(std::filesystem::path state_dir, StoreOptions options = {});
  // Commits what is queued (one last attempt), then stops the writer thread.
  ~Store() override;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& path() const { return db_.path(); }

  // affinity::EntryStore: the affinity table.
  void put_affinity(affinity::AffinityRow row) override;
  void erase_affinity(std::string cluster, std::string client) override;
  std::optional<affinity::StoredEntry> find_affinity(std::string_view cluster,
                                                     const affinity::ClientKey& key,
                                                     std::chrono::microseconds budget) override;
  std::map<std::string, std::size_t, std::less<>> count_affinity() override;
  // Unexpired under set_ttls() (every row without TTLs).
  std::size_t for_each_affinity(const std::function<bool(const affinity::AffinityRowView&)>& fn,
                                std::size_t* skipped = nullptr) override;
  std::string location() const override { return path().string(); }

  // Affinity rows at start-up, without the expired ones (deleted first, under set_ttls();
  // without TTLs every row). Empty when the database cannot be read.
  std::vector<affinity::AffinityRow> load_affinity();
  // Empty when the database cannot be read.
  std::vector<NodeStateRow> load_node_states();
  // Route overrides: listener -> cluster. Empty when the database cannot be read.
  std::map<std::string, std::string> load_routes();
  // The block list (expired rows included: the caller drops them). Empty when the database
  // cannot be read.
  std::vector<BlockRow> load_blocks();

  // Replaces the TTLs the writer uses to delete expired rows (at start and on reload).
  void set_ttls(affinity::TtlTable ttls);

  // Queues a change for the writer thread. Non-blocking apart from a short mutex; never fails.
  void enqueue(Change change) { writer_->enqueue(std::move(change)); }
  // Blocks until every change queued before the call has been committed, or its write failed
  // (it then stays queued for the next retry).
  void flush() { writer_->flush(); }
  // flush() without waiting: `done` runs (on the writer thread, or at once on the caller's when
  // nothing is pending) once every change queued before the call is committed or failed.
  void when_written(std::function<void()> done) { writer_->when_written(std::move(done)); }

  // True when the database is open and the last write succeeded.
  bool healthy() const { return db_.healthy(); }
  // Failed attempts to open or write the database, since start.
  std::uint64_t write_errors() const { return db_.write_errors(); }
  // Changes dropped because the queue was full while the database could not be written.
  std::uint64_t dropped_changes() const { return writer_->dropped(); }
  std::size_t queued() const { return writer_->queued(); }

 private:
  std::optional<affinity::TtlTable> ttls() const;
  // Runs `read` on the open connection with the database's mutex held; a failure goes to the
  // database (logged, counted) and gives an empty result.
  template <class Result, class Read>
  Result read_rows(Read read);

  Database db_;
  AffinityTable affinity_;
  mutable std::mutex ttl_mutex_;
  std::optional<affinity::TtlTable> ttls_;
  std::unique_ptr<WriteBehind> writer_;  // last: its thread starts once the database is open
};

}  // namespace pb::state
