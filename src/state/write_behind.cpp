#include "protobalance/state/write_behind.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <iterator>
#include <type_traits>
#include <utility>

#include "sqlite_values.hpp"

namespace pb::state {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Writes changes [begin, end) of `batch` in one transaction; throws on failure.
void write_transaction(SQLite::Database& db, const std::vector<Change>& batch, std::size_t begin,
                       std::size_t end) {
  SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
  AffinityTable::Writer affinity_rows(db);
  NodeStateTable::Writer node_states(db);
  RouteTable::Writer routes(db);
  BlockTable::Writer blocks(db);
  for (std::size_t i = begin; i < end; ++i) {
    std::visit(
        [&](const auto& change) {
          using T = std::decay_t<decltype(change)>;
          if constexpr (std::is_same_v<T, PutAffinity> || std::is_same_v<T, EraseAffinity>) {
            affinity_rows.write(change);
          } else if constexpr (std::is_same_v<T, PutRoute>) {
            routes.write(change);
          } else if constexpr (std::is_same_v<T, PutBlock> || std::is_same_v<T, EraseBlock>) {
            blocks.write(change);
          } else {
            node_states.write(change);
          }
        },
        batch[i]);
  }
  tx.commit();
}

}  // namespace

WriteBehind::WriteBehind(Database& db, WriteBehindOptions options,
                         std::function<void()> maintenance)
    : db_(db), options_(options), maintenance_(std::move(maintenance)) {
  writer_ = std::thread([this] { run(); });
}

WriteBehind::~WriteBehind() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();
}

std::size_t WriteBehind::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void WriteBehind::enqueue(Change change) {
  std::lock_guard lock(mutex_);
  if (queue_.size() >= options_.max_queue) {
    queue_.pop_front();
    dropped_.fetch_add(1, std::memory_order_relaxed);
    if (!warned_full_) {
      warned_full_ = true;
      spdlog::error(
          "affinity store: {} changes queued while {} cannot be written; dropping the "
          "oldest (they will not survive a restart)",
          options_.max_queue, db_.path().string());
    }
  }
  queue_.push_back(std::move(change));
  // One wake-up when the batch gets big; below that the writer's periodic wake-up suffices,
  // so enqueue() does not cost a system call.
  if (queue_.size() == options_.batch_threshold) wake_.notify_one();
}

void WriteBehind::flush() {
  std::unique_lock lock(mutex_);
  if (queue_.empty() && attempts_begun_ == attempts_done_) return;
  // Wait for an attempt that begins after this call: it takes everything queued so far,
  // including changes a failed attempt put back.
  const std::uint64_t wanted = attempts_begun_ + 1;
  flush_requested_ = true;
  wake_.notify_one();
  written_.wait(lock, [&] { return attempts_done_ >= wanted; });
}

void WriteBehind::when_written(std::function<void()> done) {
  {
    std::lock_guard lock(mutex_);
    if (!queue_.empty() || attempts_begun_ != attempts_done_) {
      // As flush(): an attempt that begins after this call takes everything queued so far.
      waiters_.emplace_back(attempts_begun_ + 1, std::move(done));
      flush_requested_ = true;
      wake_.notify_one();
      return;
    }
  }
  done();
}

void WriteBehind::run() {
  auto next_maintenance = SteadyClock::now();
  auto next_retry = SteadyClock::now() + options_.retry_interval;
  std::unique_lock lock(mutex_);
  for (;;) {
    // While failing, only the retry time, a flush() or the destructor wake the writer: a full
    // queue must not turn the wait into a busy loop.
    const bool backing_off = !db_.healthy() && SteadyClock::now() < next_retry;
    const auto deadline = backing_off ? next_retry : SteadyClock::now() + options_.flush_interval;
    wake_.wait_until(lock, deadline, [&] {
      return stopping_ || flush_requested_ ||
             (!backing_off && queue_.size() >= options_.batch_threshold);
    });
    const bool stopping = stopping_;
    const bool forced = stopping || flush_requested_;
    const auto now = SteadyClock::now();
    if (!forced && !db_.healthy() && now < next_retry) continue;

    std::vector<Change> batch(std::make_move_iterator(queue_.begin()),
                              std::make_move_iterator(queue_.end()));
    queue_.clear();
    flush_requested_ = false;
    ++attempts_begun_;
    lock.unlock();

    bool ok = true;
    {
      std::lock_guard db_lock(db_.mutex());
      ok = db_.ensure_open();
      if (ok) {
        db_.run_pending_check();
        ok = db_.is_open();
      }
      if (ok && !batch.empty()) ok = write_batch(batch, /*retry_on_fresh=*/true);
      if (ok && now >= next_maintenance) {
        if (maintenance_) maintenance_();
        next_maintenance = now + options_.maintenance_interval;
      }
    }
    if (!ok) next_retry = now + options_.retry_interval;

    lock.lock();
    if (!ok && !batch.empty()) requeue(batch);
    if (ok) warned_full_ = false;
    ++attempts_done_;
    written_.notify_all();
    // Callbacks run without the queue's mutex, so that they may enqueue or post freely.
    const auto due = std::stable_partition(waiters_.begin(), waiters_.end(),
                                           [&](const auto& w) { return w.first > attempts_done_; });
    std::vector<std::function<void()>> ready;
    for (auto it = due; it != waiters_.end(); ++it) ready.push_back(std::move(it->second));
    waiters_.erase(due, waiters_.end());
    if (!ready.empty()) {
      lock.unlock();
      for (auto& done : ready) done();
      lock.lock();
    }
    if (stopping) {
      if (!queue_.empty()) {
        spdlog::error("affinity store: stopping with {} changes not written to {}", queue_.size(),
                      db_.path().string());
      }
      return;
    }
  }
}

void WriteBehind::requeue(std::vector<Change>& batch) {
  // In front of what arrived meanwhile, keeping the order and the bound.
  const std::size_t room =
      options_.max_queue > queue_.size() ? options_.max_queue - queue_.size() : 0;
  const std::size_t skip = batch.size() > room ? batch.size() - room : 0;
  dropped_.fetch_add(skip, std::memory_order_relaxed);
  queue_.insert(queue_.begin(),
                std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(skip)),
                std::make_move_iterator(batch.end()));
}

bool WriteBehind::write_batch(const std::vector<Change>& batch, bool retry_on_fresh) {
  try {
    // Split into transactions of at most max_transaction changes: each holds the write lock
    // only briefly. A failure puts the whole batch back; replaying its committed part is
    // harmless (every change is a put or a delete of a whole row).
    const std::size_t step = std::max<std::size_t>(1, options_.max_transaction);
    for (std::size_t begin = 0; begin < batch.size(); begin += step) {
      write_transaction(db_.connection(), batch, begin, std::min(batch.size(), begin + step));
    }
    db_.succeeded();
    return true;
  } catch (const std::exception& e) {
    if (sql::is_corruption(e)) {
      // Once: a fresh file that is corrupt again is a failing disk, left to the retry timer.
      return db_.recover_from_corruption(e.what()) && retry_on_fresh && db_.ensure_open() &&
             write_batch(batch, false);
    }
    db_.fail("cannot write", e);
    return false;
  }
}

}  // namespace pb::state
