#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "protobalance/state/affinity_table.hpp"
#include "protobalance/state/block_table.hpp"
#include "protobalance/state/database.hpp"
#include "protobalance/state/node_state_table.hpp"
#include "protobalance/state/route_table.hpp"

namespace pb::state {

// A change to the database, in the order it was enqueued. Each is a put or a delete of a whole
// row, so writing one twice is harmless.
using Change = std::variant<PutAffinity, EraseAffinity, PutAdminState, PutAvailability, PutRoute,
                            PutBlock, EraseBlock>;

struct WriteBehindOptions {
  // The writer commits what is queued at least this often: the most a kill -9 can lose.
  std::chrono::milliseconds flush_interval{1000};
  // ... and sooner when this many changes are waiting, to keep transactions small.
  std::size_t batch_threshold = 4096;
  // After a failure, opening and writing are retried this often.
  std::chrono::milliseconds retry_interval{5000};
  // Changes kept while the database cannot be written; beyond, the oldest are dropped.
  std::size_t max_queue = 262'144;
  // One write transaction holds at most this many changes (a batch is split), so that it
  // holds the database for no more than a few tens of milliseconds.
  std::size_t max_transaction = 4096;
  // How often the maintenance function runs (the expiry of affinity rows).
  std::chrono::milliseconds maintenance_interval{5000};
};

// The write-behind queue of the database and the one thread that writes it.
//
// Callers never wait for the disk: enqueue() only appends to a queue in memory; the writer
// thread commits the queue at least every flush_interval. When the database cannot be opened or
// written (missing or read-only directory, disk full, locked by another process) the changes
// stay queued (bounded by max_queue: the oldest are dropped beyond) and the writer retries every
// retry_interval; the database logs and counts the failure. A batch that meets a corrupt file is
// written once more to the fresh file the database puts in its place.
class WriteBehind {
 public:
  // `maintenance` runs on the writer thread every maintenance_interval, with the database's
  // mutex held and the database open. The thread starts here: construct this last.
  WriteBehind(Database& db, WriteBehindOptions options, std::function<void()> maintenance);
  // Commits what is queued (one last attempt), then stops the writer thread.
  ~WriteBehind();
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Queues a change for the writer thread. Non-blocking apart from a short mutex; never fails.
  void enqueue(Change change);
  // Blocks until every change queued before the call has been committed, or its write failed
  // (it then stays queued for the next retry).
  void flush();
  // flush() without waiting: `done` runs on the writer thread once every change queued before
  // the call has been committed or its write failed (at once, on the caller's thread, when
  // nothing is queued or being written). It delays the writer: keep it short (post the work
  // elsewhere).
  void when_written(std::function<void()> done);

  std::size_t queued() const;
  // Changes dropped because the queue was full while the database could not be written.
  std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  void run();
  // With the database's mutex held and the database open.
  bool write_batch(const std::vector<Change>& batch, bool retry_on_fresh);
  // Puts a batch that could not be written back in front of the queue (queue mutex held).
  void requeue(std::vector<Change>& batch);

  Database& db_;
  WriteBehindOptions options_;
  std::function<void()> maintenance_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;     // the writer waits on it
  std::condition_variable written_;  // flush() waits on it
  std::deque<Change> queue_;
  // Write attempts of the writer thread: one takes the whole queue. flush() waits for one that
  // begins after it was called.
  std::uint64_t attempts_begun_ = 0;
  std::uint64_t attempts_done_ = 0;
  // when_written() callbacks and the attempt each waits for, in the order of the calls.
  std::vector<std::pair<std::uint64_t, std::function<void()>>> waiters_;
  bool flush_requested_ = false;
  bool stopping_ = false;
  bool warned_full_ = false;

  std::atomic<std::uint64_t> dropped_{0};

  std::thread writer_;  // last: starts after everything above is initialised
};

}  // namespace pb::state
