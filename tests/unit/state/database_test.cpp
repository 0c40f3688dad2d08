#include "protobalance/state/database.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <string>

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

TEST(Database, MigratesEmptyFileToLatestVersion) {
  // Verifies that a fresh state dir gets a database at the newest schema version, in WAL mode,
  // with every table the balancer uses. An empty (0-byte) file is what a fresh one looks like.
  TempDir dir;
  std::ofstream(dir.path() / "protobalance.db").close();
  {
    Store store(dir.path());
    EXPECT_TRUE(store.healthy());
    EXPECT_EQ(store.path(), dir.path() / "protobalance.db");
  }
  ASSERT_GE(migrations().size(), 2u);
  EXPECT_EQ(user_version(dir.path() / "protobalance.db"), static_cast<int>(migrations().size()));
  SQLite::Database db((dir.path() / "protobalance.db").string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA journal_mode").getString(), "wal");
  for (const char* table : {"affinity", "node_state", "listener_route", "block"}) {
    EXPECT_TRUE(db.tableExists(table)) << table;
  }
}

TEST(Database, UpgradesFromSchemaVersion1KeepingRows) {
  // Verifies that a database written by the previous schema version is migrated in place and
  // its affinity and node-state rows survive.
  TempDir dir;
  const std::int64_t t = now_s();
  {
    SQLite::Database db((dir.path() / "protobalance.db").string(),
                        SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec(std::string(migrations()[0].sql));
    db.exec("PRAGMA user_version = 1");
    SQLite::Statement put(db,
                          "INSERT INTO affinity VALUES ('web', '192.0.2.7', 'alpha', ?1, ?2, 5)");
    put.bind(1, t - 10);
    put.bind(2, t);
    put.exec();
    db.exec("INSERT INTO node_state VALUES ('web', 'beta', 'offline', 0, 0)");
  }
  Store store(dir.path());
  EXPECT_TRUE(store.healthy());
  EXPECT_EQ(user_version(store.path()), static_cast<int>(migrations().size()));
  EXPECT_EQ(store.load_affinity(),
            (std::vector<AffinityRow>{{"web", "192.0.2.7", "alpha", t - 10, t, 5}}));
  EXPECT_EQ(store.load_node_states(),
            (std::vector<NodeStateRow>{{"web", "beta", "offline", 0, 0}}));
  SQLite::Database db(store.path().string(), SQLite::OPEN_READONLY);
  EXPECT_TRUE(db.tableExists("listener_route"));
}

TEST(Database, MigratesTextClientsOfSchema2ToBinaryKeysInPlace) {
  // Verifies that a database written by the previous release (schema 2: the DDL of
  // migrations 0001 and 0002, clients as text) is converted in place: every address row keeps
  // its fields under a 17-byte binary key, a row whose client is not an address is dropped,
  // other tables are untouched, and the file reports the current schema version.
  TempDir dir;
  const std::int64_t t = now_s();
  {
    SQLite::Database db((dir.path() / "protobalance.db").string(),
                        SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    // The release's DDL, verbatim (the embedded files are the ones that release shipped).
    db.exec(std::string(migrations()[0].sql));
    db.exec(std::string(migrations()[1].sql));
    db.exec("PRAGMA user_version = 2");
    SQLite::Statement put(db, "INSERT INTO affinity VALUES ('web', ?1, ?2, ?3, ?4, ?5)");
    const std::vector<std::pair<std::string, std::string>> rows{
        {"192.0.2.7", "alpha"},       {"10.0.0.10", "beta"},   {"10.0.0.9", "gamma"},
        {"198.51.100.0/24", "alpha"}, {"2001:db8:1:2::/64", "beta"}, {"not-an-address", "beta"}};
    for (std::size_t i = 0; i < rows.size(); ++i) {
      put.bind(1, rows[i].first);
      put.bind(2, rows[i].second);
      put.bind(3, t - 100);
      put.bind(4, t - static_cast<std::int64_t>(i));
      put.bind(5, static_cast<std::int64_t>(i + 1));
      put.exec();
      put.reset();
    }
    db.exec("INSERT INTO node_state VALUES ('web', 'beta', 'offline', 0, 0)");
    db.exec("INSERT INTO listener_route VALUES ('l', 'web', 5)");
  }
  Store store(dir.path());
  EXPECT_TRUE(store.healthy());
  EXPECT_EQ(user_version(store.path()), static_cast<int>(migrations().size()));
  EXPECT_EQ(sorted(store.load_affinity()),
            (std::vector<AffinityRow>{{"web", "10.0.0.10", "beta", t - 100, t - 1, 2},
                                      {"web", "10.0.0.9", "gamma", t - 100, t - 2, 3},
                                      {"web", "192.0.2.7", "alpha", t - 100, t, 1},
                                      {"web", "198.51.100.0/24", "alpha", t - 100, t - 3, 4},
                                      {"web", "2001:db8:1:2::/64", "beta", t - 100, t - 4, 5}}));
  EXPECT_EQ(store.load_node_states(),
            (std::vector<NodeStateRow>{{"web", "beta", "offline", 0, 0}}));
  EXPECT_EQ(store.load_routes(), (std::map<std::string, std::string>{{"l", "web"}}));
  SQLite::Database db(store.path().string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("SELECT count(*) FROM affinity WHERE typeof(client) = 'blob' "
                          "AND length(client) = 17")
                .getInt(),
            5);
  // Numeric order straight from the primary key.
  EXPECT_EQ(streamed(store, "web", "0.0.0.0/0"),
            (std::vector<std::string>{"10.0.0.9", "10.0.0.10", "192.0.2.7", "198.51.100.0/24"}));
}

TEST(Database, RefusesDatabaseOfNewerSchema) {
  // Verifies that a database whose schema version is beyond this binary's migrations is
  // refused with a message naming the file and both versions, by the store (the daemon) and by
  // the reader pbadmin uses, and is left unchanged.
  TempDir dir;
  const int newer = static_cast<int>(migrations().size()) + 1;
  {
    SQLite::Database db((dir.path() / "protobalance.db").string(),
                        SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE affinity (future BLOB)");
    db.exec("PRAGMA user_version = " + std::to_string(newer));
  }
  const std::string version_text = "schema version " + std::to_string(newer);
  try {
    Store store(dir.path());
    ADD_FAILURE() << "the store opened a newer database";
  } catch (const SchemaTooNew& e) {
    EXPECT_NE(std::string(e.what()).find(version_text), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("protobalance.db"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_affinity_file(dir.path() / "protobalance.db"), SchemaTooNew);
  EXPECT_EQ(user_version(dir.path() / "protobalance.db"), newer);
}

TEST(Database, CorruptFileMovedAsideAndFreshDatabaseWorks) {
  // Verifies that a file that is not a database is renamed to protobalance.db.corrupt-<UTC>
  // with its bytes intact, and that the store then works on a fresh file.
  TempDir dir;
  const std::string garbage(64 * 1024, '\x5a');
  std::ofstream(dir.path() / "protobalance.db", std::ios::binary) << garbage;

  Store store(dir.path());
  EXPECT_TRUE(store.healthy());
  EXPECT_EQ(store.write_errors(), 1u);  // the corruption is counted as a fault
  const auto copies = corrupt_copies(dir.path());
  ASSERT_EQ(copies.size(), 1u);
  // protobalance.db.corrupt-YYYYmmddTHHMMSSZ
  EXPECT_EQ(copies[0].filename().string().size(),
            std::string("protobalance.db.corrupt-").size() + 16);
  EXPECT_EQ(copies[0].filename().string().back(), 'Z');
  EXPECT_EQ(std::filesystem::file_size(copies[0]), garbage.size());

  store.enqueue(PutAffinity{row("web", "192.0.2.7", "alpha", now_s())});
  store.flush();
  EXPECT_EQ(on_disk(store).size(), 1u);
  EXPECT_EQ(user_version(store.path()), static_cast<int>(migrations().size()));
}

TEST(Database, DamagedPagesFoundAtOpen) {
  // Verifies that a database whose header is fine but whose pages are damaged is detected at
  // open (quick_check) and moved aside, rather than failing writes later.
  TempDir dir;
  {
    Store store(dir.path());
    for (int i = 0; i < 3000; ++i) {
      store.enqueue(
          PutAffinity{row("web", "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250),
                          "alpha", now_s())});
    }
  }  // clean close: checkpointed into the main file, WAL removed
  const auto db_file = dir.path() / "protobalance.db";
  ASSERT_GT(std::filesystem::file_size(db_file), 16u * 4096u);
  {
    std::fstream f(db_file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 * 4096);
    const std::string noise(4 * 4096, '\x77');
    f.write(noise.data(), static_cast<std::streamsize>(noise.size()));
  }
  Store store(dir.path());
  EXPECT_TRUE(store.healthy());
  EXPECT_EQ(corrupt_copies(dir.path()).size(), 1u);
  EXPECT_TRUE(store.load_affinity().empty());  // a fresh database
}

TEST(Database, UnwritableLocationKeepsChangesAndRetries) {
  // Verifies that a state dir that cannot be created (a regular file is in the way; chmod does
  // not stop root) leaves the store running in memory: errors counted, changes kept, nothing
  // thrown; and that once the path is fixed, the next attempt writes everything kept.
  TempDir dir;
  const auto blocker = dir.path() / "blocker";
  std::ofstream(blocker) << "not a directory";
  const auto state_dir = blocker / "state";

  Store store(state_dir, StoreOptions{.retry_interval = 200ms});
  EXPECT_FALSE(store.healthy());
  EXPECT_GT(store.write_errors(), 0u);
  EXPECT_TRUE(store.load_affinity().empty());
  store.enqueue(PutAffinity{row("web", "192.0.2.7", "alpha", now_s())});
  store.enqueue(PutAdminState{"web", "alpha", "offline"});
  store.flush();  // returns: the attempt failed
  EXPECT_EQ(store.queued(), 2u);
  const auto errors = store.write_errors();
  EXPECT_GT(errors, 1u);

  std::filesystem::remove(blocker);
  std::filesystem::create_directory(blocker);
  // The background retry (every 200 ms here) picks it up without any call. queued() counts
  // what waits for the writer, not what it is committing: wait for the rows themselves.
  const std::vector<NodeStateRow> states{{"web", "alpha", "offline", 0, 0}};
  ASSERT_TRUE(eventually(
      [&] {
        return store.healthy() && on_disk(store).size() == 1 && store.load_node_states() == states;
      },
      test::in(5s)));
  EXPECT_EQ(store.queued(), 0u);
  EXPECT_EQ(store.dropped_changes(), 0u);
}

TEST(Database, LockedDatabaseCountsErrorsAndRetries) {
  // Verifies that a database locked by another process (here: another connection holding the
  // write lock) makes writes fail after the busy timeout, without blocking enqueue(), and that
  // the changes are written once the lock is released.
  TempDir dir;
  Store store(dir.path(), StoreOptions{.retry_interval = 100ms, .busy_timeout = 100ms});
  store.flush();
  {
    SQLite::Database other(store.path().string(), SQLite::OPEN_READWRITE);
    other.exec("BEGIN IMMEDIATE");
    store.enqueue(PutAffinity{row("web", "192.0.2.7", "alpha", now_s())});
    store.flush();
    EXPECT_FALSE(store.healthy());
    EXPECT_GT(store.write_errors(), 0u);
    EXPECT_EQ(store.queued(), 1u);
    other.exec("ROLLBACK");
  }
  store.flush();
  EXPECT_TRUE(store.healthy());
  EXPECT_EQ(store.queued(), 0u);
  EXPECT_EQ(on_disk(store).size(), 1u);
}

}  // namespace
}  // namespace pb::state
