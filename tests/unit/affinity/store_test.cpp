#include "protobalance/affinity/store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <string>

#include "protobalance/affinity/migrations.hpp"
#include "temp_dir.hpp"

namespace pb::affinity {
namespace {

using testing::eventually;
using testing::TempDir;
using namespace std::chrono_literals;

std::int64_t now_s() {
  return std::chrono::floor<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
}

AffinityRow row(std::string cluster, std::string client, std::string node, std::int64_t seen) {
  return AffinityRow{std::move(cluster), std::move(client), std::move(node), seen - 100, seen, 3};
}

std::vector<AffinityRow> sorted(std::vector<AffinityRow> rows) {
  std::sort(rows.begin(), rows.end(), [](const AffinityRow& a, const AffinityRow& b) {
    return std::tie(a.cluster, a.client) < std::tie(b.cluster, b.client);
  });
  return rows;
}

// Rows as another process (pbadmin) sees them, read-only, while the store may be open.
std::vector<AffinityRow> on_disk(const Store& store) {
  return sorted(read_affinity_file(store.path()).value_or(std::vector<AffinityRow>{}));
}

int user_version(const std::filesystem::path& db_file) {
  SQLite::Database db(db_file.string(), SQLite::OPEN_READONLY);
  return db.execAndGet("PRAGMA user_version").getInt();
}

std::vector<std::filesystem::path> corrupt_copies(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("protobalance.db.corrupt-") && !name.ends_with("-wal") &&
        !name.ends_with("-shm")) {
      found.push_back(entry.path());
    }
  }
  return found;
}

TEST(Store, MigratesEmptyFileToLatestVersion) {
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
  for (const char* table : {"affinity", "node_state", "listener_route"}) {
    EXPECT_TRUE(db.tableExists(table)) << table;
  }
}

TEST(Store, UpgradesFromSchemaVersion1KeepingRows) {
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

// The clients of `stream_affinity_file` for `client` in `cluster`, in the order they came.
std::vector<std::string> streamed(const Store& store, std::string_view cluster,
                                  const std::string& client) {
  std::vector<std::string> clients;
  stream_affinity_file(store.path(), cluster, "", parse_client(client),
                       [&](const AffinityRowView& r) { clients.push_back(r.key.to_string()); });
  return clients;
}

TEST(Store, MigratesTextClientsOfSchema2ToBinaryKeysInPlace) {
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

TEST(Store, RefusesDatabaseOfNewerSchema) {
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

TEST(Store, ClientLookupsFindAddressesAndNetworks) {
  // Verifies the look-ups pbadmin uses: an address finds its own entry and the networks that
  // contain it; a network finds itself, the networks around it and every entry inside it, in
  // numeric order, per cluster; IPv4 and IPv6 never mix.
  TempDir dir;
  Store store(dir.path());
  const std::int64_t t = now_s();
  for (const char* client : {"10.0.0.9", "10.0.0.10", "10.0.1.1", "10.0.0.0/24", "10.0.0.0/8",
                             "11.0.0.1", "2001:db8:1:2::/64", "2001:db8:1:3::/64", "::a00:9"}) {
    store.enqueue(PutAffinity{row("web", client, "alpha", t)});
  }
  store.enqueue(PutAffinity{row("mail", "10.0.0.9", "mx", t)});
  store.flush();
  EXPECT_EQ(streamed(store, "web", "10.0.0.10"),
            (std::vector<std::string>{"10.0.0.0/8", "10.0.0.0/24", "10.0.0.10"}));
  EXPECT_EQ(streamed(store, "web", "10.0.0.0/24"),
            (std::vector<std::string>{"10.0.0.0/8", "10.0.0.0/24", "10.0.0.9", "10.0.0.10"}));
  EXPECT_EQ(streamed(store, "web", "10.0.0.0/16"),
            (std::vector<std::string>{"10.0.0.0/8", "10.0.0.0/24", "10.0.0.9", "10.0.0.10",
                                      "10.0.1.1"}));
  EXPECT_EQ(streamed(store, "web", "12.0.0.1"), std::vector<std::string>{});
  EXPECT_EQ(streamed(store, "web", "2001:db8:1:2::99"),
            std::vector<std::string>{"2001:db8:1:2::/64"});
  EXPECT_EQ(streamed(store, "web", "2001:db8::/32"),
            (std::vector<std::string>{"2001:db8:1:2::/64", "2001:db8:1:3::/64"}));
  EXPECT_EQ(streamed(store, "", "10.0.0.9"),
            (std::vector<std::string>{"10.0.0.9", "10.0.0.0/8", "10.0.0.0/24", "10.0.0.9"}));
  // The single-address query is a primary-key search, not a scan.
  SQLite::Database db(store.path().string(), SQLite::OPEN_READONLY);
  SQLite::Statement plan(db,
                         "EXPLAIN QUERY PLAN SELECT node FROM affinity WHERE cluster = 'web' "
                         "AND client >= x'00' AND client <= x'ff'");
  ASSERT_TRUE(plan.executeStep());
  EXPECT_NE(plan.getColumn(3).getString().find("PRIMARY KEY"), std::string::npos)
      << plan.getColumn(3).getString();
}

TEST(Store, FindAffinityIsAPointQueryOfOneClient) {
  // Verifies that find_affinity returns the stored entry of exactly that client and cluster,
  // and nothing for an unknown client.
  TempDir dir;
  Store store(dir.path());
  const std::int64_t t = now_s();
  store.enqueue(PutAffinity{AffinityRow{"web", "192.0.2.7", "beta", t - 9, t, 4}});
  store.enqueue(PutAffinity{AffinityRow{"web", "192.0.2.8", "alpha", t, t, 1}});
  store.flush();
  const auto found = store.find_affinity("web", *parse_client("192.0.2.7"), 100ms);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->node, "beta");
  EXPECT_EQ(found->first_seen, t - 9);
  EXPECT_EQ(found->last_seen, t);
  EXPECT_EQ(found->connections, 4);
  EXPECT_FALSE(store.find_affinity("mail", *parse_client("192.0.2.7"), 100ms));
  EXPECT_FALSE(store.find_affinity("web", *parse_client("192.0.2.9"), 100ms));
}

TEST(Store, ExpiryWalksTheTableInBoundedSteps) {
  // Verifies that expired rows are deleted by steps of a few rows each (expiry_chunk), across
  // clusters and intervals, until none is left, while unexpired rows stay.
  TempDir dir;
  StoreOptions options;
  options.expiry_interval = 20ms;
  options.flush_interval = 20ms;  // the writer's wake-up, when it also expires
  options.expiry_chunk = 3;
  options.expiry_steps = 1;
  Store store(dir.path(), options);
  const std::int64_t t = now_s();
  std::vector<AffinityRow> kept;
  for (int i = 0; i < 40; ++i) {
    const std::string client = "10.0.0." + std::to_string(i);
    const std::string cluster = i % 2 == 0 ? "a" : "b";
    const bool expired = i % 4 < 2;
    const AffinityRow r = row(cluster, client, "n", expired ? t - 7200 : t);
    store.enqueue(PutAffinity{r});
    if (!expired) kept.push_back(r);
  }
  store.flush();
  store.set_ttls(TtlTable{{}, 1h});
  EXPECT_TRUE(eventually([&] { return on_disk(store).size() == kept.size(); }, 10s));
  EXPECT_EQ(on_disk(store), sorted(kept));
}

TEST(Store, QueueIsBoundedAndWritesAreSplit) {
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

TEST(Store, BatchedChangesVisibleAfterFlushInOrder) {
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

TEST(Store, WritesWithinASecondWithoutFlush) {
  // Verifies the crash bound: without flush(), a queued entry is committed by the writer's own
  // wake-up within about a second (what a kill -9 can lose).
  TempDir dir;
  Store store(dir.path());
  store.enqueue(PutAffinity{row("web", "192.0.2.9", "alpha", now_s())});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] { return on_disk(store).size() == 1; }, 5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
}

TEST(Store, RestartKeepsEntries) {
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

TEST(Store, LoadDeletesExpiredRows) {
  // Verifies that rows which expired while the balancer was down are deleted at load, under
  // each cluster's TTL (and the fallback TTL for a cluster no longer configured).
  TempDir dir;
  const std::int64_t t = now_s();
  {
    Store store(dir.path());
    store.enqueue(PutAffinity{row("web", "192.0.2.1", "a", t - 30)});     // web ttl 60s: kept
    store.enqueue(PutAffinity{row("web", "192.0.2.2", "a", t - 120)});    // expired
    store.enqueue(PutAffinity{row("long", "192.0.2.3", "a", t - 120)});   // ttl 1h: kept
    store.enqueue(PutAffinity{row("gone", "192.0.2.4", "a", t - 7200)});  // fallback 1h: expired
  }
  Store store(dir.path());
  store.set_ttls(TtlTable{{{"web", 60s}, {"long", 1h}}, 1h});
  const std::vector<AffinityRow> expected{row("long", "192.0.2.3", "a", t - 120),
                                          row("web", "192.0.2.1", "a", t - 30)};
  EXPECT_EQ(sorted(store.load_affinity()), expected);
  EXPECT_EQ(on_disk(store), expected);
}

TEST(Store, WriterDeletesExpiredRowsWithin10Seconds) {
  // Verifies the contract that an expired row leaves the database within 10 s of expiring,
  // with no further calls into the store.
  TempDir dir;
  Store store(dir.path());
  store.set_ttls(TtlTable{{{"web", 1s}}, 1h});
  const std::int64_t t = now_s();
  store.enqueue(PutAffinity{row("web", "192.0.2.1", "a", t)});
  store.enqueue(PutAffinity{row("other", "192.0.2.1", "a", t)});  // fallback 1h: stays
  store.flush();
  ASSERT_EQ(on_disk(store).size(), 2u);

  // Expired once more than 1 s has passed since the start of second t.
  const auto expired_at = Clock::time_point(std::chrono::seconds(t + 1));
  ASSERT_TRUE(eventually([&] { return on_disk(store).size() == 1; }, 15s));
  EXPECT_LE(Clock::now() - expired_at, 10s);
  EXPECT_EQ(on_disk(store).front().cluster, "other");
}

TEST(Store, CorruptFileMovedAsideAndFreshDatabaseWorks) {
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

TEST(Store, DamagedPagesFoundAtOpen) {
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

TEST(Store, UnwritableLocationKeepsChangesAndRetries) {
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
  // The background retry (every 200 ms here) picks it up without any call.
  ASSERT_TRUE(eventually([&] { return store.healthy() && store.queued() == 0; }, 5s));
  EXPECT_EQ(on_disk(store).size(), 1u);
  EXPECT_EQ(store.load_node_states(),
            (std::vector<NodeStateRow>{{"web", "alpha", "offline", 0, 0}}));
  EXPECT_EQ(store.dropped_changes(), 0u);
}

TEST(Store, QueueBoundDropsOldest) {
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

TEST(Store, LockedDatabaseCountsErrorsAndRetries) {
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

TEST(Store, ReadAffinityFileHandlesMissingFileAndFilters) {
  // Verifies pbadmin's read path: no file is "no database" (not an error), a file that is not a
  // database is an error naming the file, and the cluster/node filters apply.
  TempDir dir;
  EXPECT_FALSE(read_affinity_file(dir.path() / "protobalance.db").has_value());
  const std::int64_t t = now_s();
  {
    Store store(dir.path());
    store.enqueue(PutAffinity{row("web", "192.0.2.1", "alpha", t)});
    store.enqueue(PutAffinity{row("web", "192.0.2.2", "beta", t)});
    store.enqueue(PutAffinity{row("mail", "192.0.2.1", "alpha", t)});
  }
  EXPECT_EQ(read_affinity_file(dir.path() / "protobalance.db")->size(), 3u);
  EXPECT_EQ(read_affinity_file(dir.path() / "protobalance.db", "web")->size(), 2u);
  EXPECT_EQ(read_affinity_file(dir.path() / "protobalance.db", "", "alpha")->size(), 2u);
  EXPECT_EQ(*read_affinity_file(dir.path() / "protobalance.db", "mail", "alpha"),
            (std::vector<AffinityRow>{row("mail", "192.0.2.1", "alpha", t)}));
  EXPECT_TRUE(read_affinity_file(dir.path() / "protobalance.db", "nope")->empty());

  std::ofstream(dir.path() / "junk.db") << std::string(8192, 'j');
  try {
    read_affinity_file(dir.path() / "junk.db");
    ADD_FAILURE() << "expected an exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("junk.db"), std::string::npos) << e.what();
  }
  EXPECT_EQ(std::filesystem::file_size(dir.path() / "junk.db"), 8192u);  // never "repaired"
}

TEST(Store, ExpiryCutoffIsNeverLate) {
  // Verifies the shared expiry rule: an entry seen in second L is expired once now - ttl passes
  // the start of L, i.e. possibly a fraction of a second early, never late.
  const auto at = [](std::int64_t ms) { return Clock::time_point(std::chrono::milliseconds(ms)); };
  // last_seen 100 (the use happened somewhere in [100, 101)), ttl 10 s.
  EXPECT_FALSE(100 < expiry_cutoff(at(110'000), 10s));  // exactly ttl after the second's start
  EXPECT_TRUE(100 < expiry_cutoff(at(110'001), 10s));
  EXPECT_FALSE(100 < expiry_cutoff(at(100'500), 10s));
}

}  // namespace
}  // namespace pb::affinity
