#include "protobalance/state/write_behind.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "protobalance/state/migrations.hpp"
#include "protobalance/state/store.hpp"
#include "state_fixtures.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"

namespace pb::state {
namespace {

using namespace fixtures;  // NOLINT(google-build-using-namespace): the area's test helpers
using affinity::expiry_cutoff;
using affinity::TtlTable;
using test::eventually;
using test::TempDir;
using namespace std::chrono_literals;

TEST(WriteBehind, QueueIsBoundedAndWritesAreSplit) {
  // Verifies that a batch larger than max_transaction is written completely (in several
  // transactions), and that queued() reports the depth the metric exports.
  TempDir dir;
  StoreOptions options;
  options.max_transaction = 7;
  options.flush_interval = 1h;  // only flush() writes
  options.batch_threshold = 1'000'000;
  Store store(dir.path(), options);
  const std::int64_t t = now_s();
  for (int i = 0; i < 100; ++i) {
    store.enqueue(PutAffinity{row("web", "10.1.0." + std::to_string(i), "n", t)});
  }
  EXPECT_EQ(store.queued(), 100u);
  store.flush();
  EXPECT_EQ(store.queued(), 0u);
  EXPECT_EQ(on_disk(store).size(), 100u);
}

TEST(WriteBehind, BatchedChangesVisibleAfterFlushInOrder) {
  // Verifies that queued changes of every kind reach the file by flush(), applied in the order
  // they were queued (a put then an erase of the same client leaves nothing).
  TempDir dir;
  Store store(dir.path());
  const std::int64_t t = now_s();
  for (int i = 0; i < 5000; ++i) {
    store.enqueue(PutAffinity{
        row("web", "10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + ".0/24",
            "alpha", t)});
  }
  store.enqueue(PutAffinity{row("web", "192.0.2.1", "alpha", t)});
  store.enqueue(PutAffinity{row("web", "192.0.2.1", "beta", t)});  // replaces
  store.enqueue(PutAffinity{row("web", "192.0.2.2", "alpha", t)});
  store.enqueue(EraseAffinity{"web", "192.0.2.2"});
  store.enqueue(PutAdminState{"web", "alpha", "draining"});
  store.enqueue(PutAvailability{"web", "alpha", 1234567, 3});
  store.enqueue(PutAvailability{"web", "beta", 99, 1});
  store.enqueue(PutAdminState{"web", "beta", "offline"});
  store.enqueue(PutAdminState{"web", "beta", ""});  // the operator's state cleared again
  store.flush();

  EXPECT_EQ(store.queued(), 0u);
  EXPECT_EQ(store.write_errors(), 0u);
  const auto rows = read_affinity_file(store.path()).value();
  EXPECT_EQ(rows.size(), 5001u);  // 5000 distinct /24 networks, plus 192.0.2.1
  const auto only = read_affinity_file(store.path(), "web", "beta").value();
  EXPECT_EQ(only, (std::vector<AffinityRow>{row("web", "192.0.2.1", "beta", t)}));
  auto states = store.load_node_states();
  std::sort(states.begin(), states.end(),
            [](const auto& a, const auto& b) { return a.node < b.node; });
  EXPECT_EQ(states, (std::vector<NodeStateRow>{{"web", "alpha", "draining", 1234567, 3},
                                               {"web", "beta", "", 99, 1}}));
}

TEST(WriteBehind, WritesWithinASecondWithoutFlush) {
  // Verifies the crash bound: without flush(), a queued entry is committed by the writer's own
  // wake-up within about a second (what a kill -9 can lose).
  TempDir dir;
  Store store(dir.path());
  store.enqueue(PutAffinity{row("web", "192.0.2.9", "alpha", now_s())});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] { return on_disk(store).size() == 1; }, test::in(5s)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(WriteBehind, QueueBoundDropsOldest) {
  // Verifies that while the database is unwritable the queue stays bounded, dropping the oldest
  // changes and counting them, and that the newest ones are written after recovery.
  TempDir dir;
  const auto blocker = dir.path() / "blocker";
  std::ofstream(blocker) << "x";
  Store store(blocker / "state", StoreOptions{.retry_interval = 100ms, .max_queue = 10});
  for (int i = 0; i < 15; ++i) {
    store.enqueue(PutAffinity{row("web", "192.0.2." + std::to_string(i), "alpha", now_s())});
  }
  store.flush();
  EXPECT_EQ(store.queued(), 10u);
  EXPECT_EQ(store.dropped_changes(), 5u);

  std::filesystem::remove(blocker);
  std::filesystem::create_directory(blocker);
  store.flush();
  ASSERT_TRUE(store.healthy());
  const auto rows = on_disk(store);
  ASSERT_EQ(rows.size(), 10u);
  for (const auto& r : rows) {
    const int host = std::stoi(r.client.substr(r.client.rfind('.') + 1));
    EXPECT_GE(host, 5) << r.client;
  }
}

TEST(WriteBehind, WhenWrittenCallsBackAfterTheCommitWithoutWaiting) {
  // Verifies when_written(): it returns at once while the writer cannot commit (another
  // connection holds the write lock), its callback runs on the writer thread once the change is
  // on disk, and with nothing pending the callback runs at once on the caller's thread.
  TempDir dir;
  StoreOptions options;
  options.flush_interval = 1h;  // only flush() and when_written() write
  options.busy_timeout = 60s;   // the writer waits for the lock rather than failing
  Store store(dir.path(), options);
  store.flush();

  std::atomic<bool> done{false};
  std::atomic<bool> on_disk_when_called{false};
  std::thread::id called_on;
  const BlockRow blocked{"192.0.2.7", "web", now_s(), 0};
  {
    SQLite::Database other(store.path().string(), SQLite::OPEN_READWRITE);
    other.exec("BEGIN IMMEDIATE");
    store.enqueue(PutBlock{blocked});
    store.when_written([&] {
      called_on = std::this_thread::get_id();
      try {
        const auto rows = read_block_file(store.path(), now_s());
        on_disk_when_called = rows && *rows == std::vector<BlockRow>{blocked};
      } catch (const std::exception&) {  // stays false
      }
      done = true;
    });
    EXPECT_FALSE(done);  // returned while the writer waits for the lock
    other.exec("ROLLBACK");
  }
  ASSERT_TRUE(eventually([&] { return done.load(); }, test::in(30s)));
  EXPECT_TRUE(on_disk_when_called);
  EXPECT_NE(called_on, std::this_thread::get_id());

  bool at_once = false;
  store.when_written([&] { at_once = true; });
  EXPECT_TRUE(at_once);
}

TEST(WriteBehind, RestartKeepsEntries) {
  // Verifies that what was queued before a clean stop (destructor, no flush) is loaded again by
  // the next store on the same directory.
  TempDir dir;
  const std::int64_t t = now_s();
  {
    Store store(dir.path());
    store.enqueue(PutAffinity{row("web", "192.0.2.7", "alpha", t)});
    store.enqueue(PutAffinity{row("mail", "2001:db8:1:2::/64", "mx2", t)});
    store.enqueue(PutAdminState{"web", "gamma", "offline"});
  }
  Store store(dir.path());
  EXPECT_EQ(sorted(store.load_affinity()),
            (std::vector<AffinityRow>{row("mail", "2001:db8:1:2::/64", "mx2", t),
                                      row("web", "192.0.2.7", "alpha", t)}));
  EXPECT_EQ(store.load_node_states(),
            (std::vector<NodeStateRow>{{"web", "gamma", "offline", 0, 0}}));
}

}  // namespace
}  // namespace pb::state
