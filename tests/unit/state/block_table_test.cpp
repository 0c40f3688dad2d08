#include "protobalance/state/block_table.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "protobalance/state/database.hpp"
#include "protobalance/state/store.hpp"
#include "state_fixtures.hpp"
#include "support/process.hpp"

namespace pb::state {
namespace {

using fixtures::now_s;
using test::TempDir;

TEST(BlockTable, StoreWritesReplacesErasesAndLoadsBlocks) {
  // Verifies the block table through the store: a block per (network, listener), a second put
  // of the same pair replaces it, an erase removes only its pair, and load returns the rows in
  // (network, listener) order across a restart of the store.
  TempDir dir;
  const std::int64_t now = now_s();
  {
    Store store(dir.path());
    store.enqueue(PutBlock{BlockRow{"192.0.2.0/24", "", now, 0}});
    store.enqueue(PutBlock{BlockRow{"192.0.2.0/24", "web", now, now + 60}});
    store.enqueue(PutBlock{BlockRow{"2001:db8::/32", "", now, now + 30}});
    store.enqueue(PutBlock{BlockRow{"2001:db8::/32", "", now + 1, now + 90}});  // replaces
    store.enqueue(PutBlock{BlockRow{"198.51.100.7", "", now, 0}});
    store.enqueue(EraseBlock{"198.51.100.7", ""});
    store.enqueue(EraseBlock{"192.0.2.0/24", "mail"});  // no such row: harmless
    store.flush();
  }
  Store reopened(dir.path());
  const std::vector<BlockRow> expected{BlockRow{"192.0.2.0/24", "", now, 0},
                                       BlockRow{"192.0.2.0/24", "web", now, now + 60},
                                       BlockRow{"2001:db8::/32", "", now + 1, now + 90}};
  EXPECT_EQ(reopened.load_blocks(), expected);
}

TEST(BlockTable, ReaderOfAnotherProcessSkipsExpiredRows) {
  // Verifies what pbadmin reads: nullopt without a file, then the rows not ended at `now` (a
  // row ending exactly now has ended), read-only while the store has the file open; a block
  // without an end is stored as NULL.
  TempDir dir;
  EXPECT_FALSE(read_block_file(dir.path() / Database::kFileName, now_s()).has_value());
  const std::int64_t now = now_s();
  Store store(dir.path());
  store.enqueue(PutBlock{BlockRow{"192.0.2.1", "", now - 100, now - 1}});
  store.enqueue(PutBlock{BlockRow{"192.0.2.2", "", now - 100, now}});
  store.enqueue(PutBlock{BlockRow{"192.0.2.3", "web", now - 100, now + 1}});
  store.enqueue(PutBlock{BlockRow{"192.0.2.4", "", now - 100, 0}});
  store.flush();
  const auto rows = read_block_file(store.path(), now);
  ASSERT_TRUE(rows.has_value());
  const std::vector<BlockRow> expected{BlockRow{"192.0.2.3", "web", now - 100, now + 1},
                                       BlockRow{"192.0.2.4", "", now - 100, 0}};
  EXPECT_EQ(*rows, expected);
  SQLite::Database db(store.path().string(), SQLite::OPEN_READONLY);
  EXPECT_TRUE(db.execAndGet("SELECT expires FROM block WHERE network = '192.0.2.4'").isNull());
}

}  // namespace
}  // namespace pb::state
