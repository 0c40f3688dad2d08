#include "protobalance/affinity/affinity_map.hpp"

#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <future>
#include <iostream>
#include <thread>

#include "protobalance/state/affinity_file.hpp"
#include "protobalance/state/store.hpp"
#include "support/process.hpp"

namespace pb::affinity {
namespace {

using state::PutAffinity;
using state::read_affinity_file;
using state::Store;
using test::TempDir;
using namespace std::chrono_literals;

// A fixed clock reading: the map takes `now` from its caller, so tests choose time.
const Clock::time_point kT0 = Clock::time_point(std::chrono::seconds(1'800'000'000));
constexpr std::int64_t kT0s = 1'800'000'000;

ClientKey key(const char* text) {
  return *parse_client(text);
}

std::vector<AffinityRow> disk(const Store& store) {
  auto rows = read_affinity_file(store.path()).value_or(std::vector<AffinityRow>{});
  std::sort(rows.begin(), rows.end(), [](const AffinityRow& a, const AffinityRow& b) {
    return std::tie(a.cluster, a.client) < std::tie(b.cluster, b.client);
  });
  return rows;
}

// Writes `count` entries "10.x.y.z" -> node<i % 3> of cluster "web" with last_seen `seen`, in
// one transaction through the store's own schema.
void fill_store(const std::filesystem::path& dir, int count, std::int64_t seen) {
  { Store store(dir); }  // creates the schema
  SQLite::Database db((dir / "protobalance.db").string(), SQLite::OPEN_READWRITE);
  SQLite::Transaction tx(db);
  SQLite::Statement put(db, "INSERT INTO affinity VALUES ('web', ?1, ?2, ?3, ?4, 1)");
  for (int i = 0; i < count; ++i) {
    const auto blob = key(("10." + std::to_string((i >> 16) & 255) + "." +
                           std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255))
                              .c_str())
                          .to_blob();
    put.bind(1, blob.data(), static_cast<int>(blob.size()));
    put.bind(2, "node" + std::to_string(i % 3));
    put.bind(3, seen - 10);
    put.bind(4, seen);
    put.exec();
    put.reset();
  }
  tx.commit();
}

TEST(AffinityMap, ReturningClientServedFromDatabaseWhileLoading) {
  // Verifies that while the background load is held (not a race: the hook blocks it), a client
  // whose entry is only in the database is still answered with its node, through the store's
  // point query, and that the load then completes with every entry.
  TempDir dir;
  const std::int64_t now_s =
      std::chrono::floor<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  constexpr int kCount = 30'000;
  fill_store(dir.path(), kCount, now_s);
  Store store(dir.path());
  store.set_ttls(TtlTable{{{"web", 1h}}, 1h});
  AffinityMap map(&store);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> holding;
  map.load_in_background([&] {
    holding.set_value();
    released.wait();
  });
  ASSERT_EQ(holding.get_future().wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(map.loading());
  EXPECT_EQ(map.size(), 0u);
  const auto now = Clock::now();
  // i = 12345 -> 10.0.48.57 on node0 (12345 % 3 == 0); i = 20000 -> 10.0.78.32 on node2.
  EXPECT_EQ(map.lookup("web", key("10.0.48.57"), now, 1h), "node0");
  EXPECT_EQ(map.lookup("web", key("10.0.78.32"), now, 1h), "node2");
  EXPECT_EQ(map.lookup("web", key("10.200.0.1"), now, 1h), std::nullopt);  // never seen
  EXPECT_EQ(map.lookup("mail", key("10.0.48.57"), now, 1h), std::nullopt);
  // Expired in the database (i = 7, not looked up before): not returned.
  EXPECT_EQ(map.lookup("web", key("10.0.0.7"), now + 2h, 1h), std::nullopt);
  EXPECT_TRUE(map.loading());
  EXPECT_EQ(map.size(), 2u);  // what the look-ups found is kept

  // A client moved by a worker during the load keeps its new node.
  map.record("web", key("10.0.0.1"), "node2", now);
  release.set_value();
  ASSERT_TRUE(map.wait_loaded(30s));
  EXPECT_FALSE(map.loading());
  EXPECT_EQ(map.size(), static_cast<std::size_t>(kCount));
  EXPECT_EQ(map.lookup("web", key("10.0.0.1"), now, 1h), "node2");
  EXPECT_EQ(map.lookup("web", key("10.0.0.2"), now, 1h), "node2");
  EXPECT_EQ(map.lookup("web", key("10.0.0.3"), now, 1h), "node0");
}

TEST(AffinityMap, ForgottenWhileLoadingIsNotLoadedBack) {
  // Verifies that a client forgotten while the load is held does not come back from the
  // database snapshot the load reads.
  TempDir dir;
  const std::int64_t now_s =
      std::chrono::floor<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  fill_store(dir.path(), 100, now_s);
  Store store(dir.path());
  AffinityMap map(&store);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  map.load_in_background([released] { released.wait(); });
  EXPECT_FALSE(map.forget("web", key("10.0.0.5")));
  release.set_value();
  ASSERT_TRUE(map.wait_loaded(30s));
  EXPECT_EQ(map.size(), 99u);
  EXPECT_EQ(map.lookup("web", key("10.0.0.5"), Clock::now(), 1h), std::nullopt);
}

TEST(AffinityMap, ManyEntriesSurviveGrowthAndErasure) {
  // Verifies the open-addressing tables under load: 20000 clients of two families and two
  // clusters are found after growth, erasing every third keeps the others findable (entries
  // shift back into freed slots), and a sweep removes exactly the expired ones.
  AffinityMap map(nullptr);
  const auto client = [](int i) {
    return i % 2 == 0 ? key(("10." + std::to_string(i >> 8) + "." + std::to_string(i & 255) + ".1")
                                .c_str())
                      : key(("2001:db8:" + std::to_string(i / 10000) + ":" +
                             std::to_string(i % 10000) + "::/64")
                                .c_str());
  };
  for (int i = 0; i < 20'000; ++i) {
    map.record(i % 5 == 0 ? "mail" : "web", client(i), "n" + std::to_string(i % 7),
               kT0 + std::chrono::seconds(i % 2 == 0 ? 0 : 100));
  }
  EXPECT_EQ(map.size(), 20'000u);
  for (int i = 0; i < 20'000; i += 3) {
    EXPECT_TRUE(map.forget(i % 5 == 0 ? "mail" : "web", client(i)));
  }
  for (int i = 0; i < 20'000; ++i) {
    const auto found = map.lookup(i % 5 == 0 ? "mail" : "web", client(i), kT0 + 101s, 1h);
    if (i % 3 == 0) {
      ASSERT_EQ(found, std::nullopt) << i;
    } else {
      ASSERT_EQ(found, "n" + std::to_string(i % 7)) << i;
    }
  }
  const std::size_t left = map.size();
  // Entries seen at kT0 expire with a 50 s TTL at kT0 + 60 s; those seen at kT0 + 100 s stay.
  std::size_t even_left = 0;
  for (int i = 0; i < 20'000; ++i) even_left += (i % 3 != 0 && i % 2 == 0) ? 1 : 0;
  EXPECT_EQ(map.sweep(kT0 + 60s, TtlTable{{}, 50s}), even_left);
  EXPECT_EQ(map.size(), left - even_left);
  for (int i = 1; i < 20'000; i += 2) {
    const auto found = map.lookup(i % 5 == 0 ? "mail" : "web", client(i), kT0 + 101s, 1h);
    ASSERT_EQ(found.has_value(), i % 3 != 0) << i;
  }
}

TEST(AffinityMap, RecordThenLookupPerCluster) {
  // Verifies that a recorded client is found in its cluster only, and unknown clients are not.
  AffinityMap map(nullptr);
  map.record("web", key("192.0.2.7"), "alpha", kT0);
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0 + 5s, 1h), "alpha");
  EXPECT_EQ(map.lookup("mail", key("192.0.2.7"), kT0 + 5s, 1h), std::nullopt);
  EXPECT_EQ(map.lookup("web", key("192.0.2.8"), kT0 + 5s, 1h), std::nullopt);
  EXPECT_EQ(map.size(), 1u);
}

TEST(AffinityMap, RecordMovesClientAndCountsConnections) {
  // Verifies that the node that served the client becomes its entry, first_seen stays, and
  // every connection is counted.
  AffinityMap map(nullptr);
  map.record("web", key("192.0.2.7"), "alpha", kT0);
  map.record("web", key("192.0.2.7"), "alpha", kT0 + 10s);
  map.record("web", key("192.0.2.7"), "beta", kT0 + 20s);
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0 + 21s, 1h), "beta");
  EXPECT_EQ(map.snapshot(),
            (std::vector<AffinityRow>{{"web", "192.0.2.7", "beta", kT0s, kT0s + 20, 3}}));
}

TEST(AffinityMap, ExpiredEntryNeverReturnedAndDeleted) {
  // Verifies that an entry unused for longer than the TTL is not returned, is erased from the
  // map, and is deleted from the database.
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  map.record("web", key("192.0.2.7"), "alpha", kT0);
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0 + 60s, 60s), "alpha");  // exactly the TTL
  store.flush();
  ASSERT_EQ(disk(store).size(), 1u);

  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0 + 61s, 60s), std::nullopt);
  EXPECT_EQ(map.size(), 0u);
  // Even with a longer TTL the entry is gone: expiry erased it.
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0 + 61s, 1h), std::nullopt);
  store.flush();
  EXPECT_TRUE(disk(store).empty());
}

TEST(AffinityMap, ForgetAndPin) {
  // Verifies forget (true only when there was an entry; the row is deleted) and pin (sets the
  // node at once, creating the entry if needed, and writes it).
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  map.record("web", key("192.0.2.7"), "alpha", kT0);
  EXPECT_TRUE(map.forget("web", key("192.0.2.7")));
  EXPECT_FALSE(map.forget("web", key("192.0.2.7")));
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0, 1h), std::nullopt);

  map.pin("web", key("10.0.0.0/24"), "gamma", kT0 + 5s);
  EXPECT_EQ(map.lookup("web", key("10.0.0.0/24"), kT0 + 6s, 1h), "gamma");
  map.record("web", key("192.0.2.9"), "alpha", kT0);
  map.pin("web", key("192.0.2.9"), "beta", kT0 + 7s);
  EXPECT_EQ(map.lookup("web", key("192.0.2.9"), kT0 + 8s, 1h), "beta");
  store.flush();
  EXPECT_EQ(disk(store),
            (std::vector<AffinityRow>{{"web", "10.0.0.0/24", "gamma", kT0s + 5, kT0s + 5, 0},
                                      {"web", "192.0.2.9", "beta", kT0s, kT0s + 7, 1}}));
}

TEST(AffinityMap, SweepErasesExpiredPerClusterTtl) {
  // Verifies that sweep erases exactly the entries expired under their own cluster's TTL and
  // deletes them from the database.
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  map.record("short", key("192.0.2.1"), "a", kT0);
  map.record("short", key("192.0.2.2"), "a", kT0 + 50s);
  map.record("long", key("192.0.2.1"), "a", kT0);
  map.record("unlisted", key("192.0.2.1"), "a", kT0);
  const TtlTable ttls{{{"short", 30s}, {"long", 1h}}, 40s};
  EXPECT_EQ(map.sweep(kT0 + 60s, ttls), 2u);  // short/192.0.2.1 and unlisted (fallback 40 s)
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(map.lookup("short", key("192.0.2.2"), kT0 + 60s, 30s), "a");
  EXPECT_EQ(map.lookup("long", key("192.0.2.1"), kT0 + 60s, 1h), "a");
  store.flush();
  EXPECT_EQ(disk(store).size(), 2u);
}

TEST(AffinityMap, LastSeenWrittenAtCoarseGrain) {
  // Verifies the documented write grain: repeat connections of an unchanged client are not
  // written until the stored last_seen is a grain (60 s) old; a node change is written at once.
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  map.record("web", key("192.0.2.7"), "alpha", kT0);
  map.record("web", key("192.0.2.7"), "alpha", kT0 + 30s);
  store.flush();
  EXPECT_EQ(disk(store), (std::vector<AffinityRow>{{"web", "192.0.2.7", "alpha", kT0s, kT0s, 1}}));
  map.record("web", key("192.0.2.7"), "alpha", kT0 + 60s);
  store.flush();
  EXPECT_EQ(disk(store),
            (std::vector<AffinityRow>{{"web", "192.0.2.7", "alpha", kT0s, kT0s + 60, 3}}));
  map.record("web", key("192.0.2.7"), "beta", kT0 + 61s);
  store.flush();
  EXPECT_EQ(disk(store),
            (std::vector<AffinityRow>{{"web", "192.0.2.7", "beta", kT0s, kT0s + 61, 4}}));
}

TEST(AffinityMap, LoadFillsMapWithoutWriting) {
  // Verifies that rows loaded at start answer lookups with their stored last_seen, that rows
  // with an unreadable client are skipped, and that loading queues nothing for the store.
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  const std::vector<AffinityRow> rows{{"web", "192.0.2.7", "alpha", kT0s - 100, kT0s - 10, 4},
                                      {"web", "2001:db8:1:2::/64", "beta", kT0s, kT0s, 1},
                                      {"web", "not-an-address", "beta", kT0s, kT0s, 1}};
  EXPECT_EQ(map.load(rows), 2u);
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(store.queued(), 0u);
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0, 1h), "alpha");
  EXPECT_EQ(map.lookup("web", key("2001:db8:1:2::/64"), kT0, 1h), "beta");
  EXPECT_EQ(map.lookup("web", key("192.0.2.7"), kT0, 9s), std::nullopt);  // 10 s old
}

TEST(AffinityMap, ConcurrentRecordAndLookupLoseNothing) {
  // Verifies that 4 threads recording and looking up overlapping clients neither lose nor
  // double-count a connection (the sanitizers check the memory accesses).
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  constexpr int kThreads = 4;
  constexpr int kIterations = 20'000;
  constexpr unsigned kClients = 1000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        const unsigned n = static_cast<unsigned>(i * 7 + t) % kClients;
        const ClientKey k = make_key(boost::asio::ip::address_v4(0x0A000000u + n), 32, 64);
        const auto now = kT0 + std::chrono::seconds(i / 1000);
        if (!map.lookup("web", k, now, 1h)) {
          map.record("web", k, "node" + std::to_string(t), now);
        } else {
          map.record("web", k, "node0", now);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(map.size(), kClients);
  std::int64_t connections = 0;
  for (const auto& r : map.snapshot()) connections += r.connections;
  EXPECT_EQ(connections, kThreads * kIterations);
  store.flush();
  EXPECT_EQ(disk(store).size(), kClients);
  EXPECT_EQ(store.write_errors(), 0u);
}

TEST(AffinityMap, Loads100kEntriesFromDatabase) {
  // Verifies that 100,000 stored entries are all loaded into the map at start, and measures the
  // time (open + read + fill) for the README; the figure that counts is from a Release build.
  TempDir dir;
  constexpr int kEntries = 100'000;
  const std::int64_t now =
      std::chrono::floor<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
  {
    Store store(dir.path());
    for (int i = 0; i < kEntries; ++i) {
      const boost::asio::ip::address_v4 a(0x0A000000u + static_cast<std::uint32_t>(i));
      store.enqueue(
          PutAffinity{AffinityRow{"web", make_key(a, 32, 64).to_string(),
                                  "node" + std::to_string(i % 8), now - 3600, now, i % 50 + 1}});
    }
  }
  const auto start = std::chrono::steady_clock::now();
  Store store(dir.path());
  store.set_ttls(TtlTable{{{"web", std::chrono::hours(24 * 30)}}, std::chrono::hours(24 * 30)});
  const auto opened = std::chrono::steady_clock::now();
  const auto rows = store.load_affinity();
  const auto read = std::chrono::steady_clock::now();
  AffinityMap map(&store);
  const std::size_t loaded = map.load(rows);
  const auto filled = std::chrono::steady_clock::now();

  using ms = std::chrono::duration<double, std::milli>;
  std::cout << "[ measure  ] 100k affinity entries: open " << ms(opened - start).count()
            << " ms, read " << ms(read - opened).count() << " ms, fill map "
            << ms(filled - read).count() << " ms, total " << ms(filled - start).count() << " ms\n";
  EXPECT_EQ(loaded, static_cast<std::size_t>(kEntries));
  EXPECT_EQ(map.size(), static_cast<std::size_t>(kEntries));
  EXPECT_EQ(map.lookup("web", make_key(boost::asio::ip::address_v4(0x0A000000u + 12345), 32, 64),
                       Clock::now(), std::chrono::hours(1)),
            "node" + std::to_string(12345 % 8));
}

// Records what the map tells its observer, as text.
struct RecordingObserver final : AffinityObserver {
  std::vector<std::string> events;
  void decided(std::string_view cluster, const ClientKey& k, std::string_view node,
               Clock::time_point, bool moved) override {
    events.push_back((moved ? "moved " : "decided ") + std::string(cluster) + " " + k.to_string() +
                     " " + std::string(node));
  }
  void pinned(std::string_view cluster, const ClientKey& k, std::string_view node,
              Clock::time_point) override {
    events.push_back("pinned " + std::string(cluster) + " " + k.to_string() + " " +
                     std::string(node));
  }
  void forgotten(std::string_view cluster, const ClientKey& k) override {
    events.push_back("forgotten " + std::string(cluster) + " " + k.to_string());
  }
};

TEST(AffinityMap, ObserverHearsLocalDecisionsOnly) {
  // Verifies that the observer is told of new and moved entries, local pins and forgets, but
  // not of connections that change nothing, nor of changes that came from a twin (which are
  // still stored and persisted like local ones).
  TempDir dir;
  Store store(dir.path());
  AffinityMap map(&store);
  RecordingObserver observer;
  map.set_observer(&observer);
  map.record("web", key("10.0.0.1"), "a", kT0);
  map.record("web", key("10.0.0.1"), "a", kT0 + 1s);  // same node: nothing to share
  map.record("web", key("10.0.0.1"), "b", kT0 + 2s);  // moved
  map.pin("web", key("10.0.0.2"), "a", kT0);
  map.forget("web", key("10.0.0.1"));
  map.forget("web", key("10.0.0.9"));  // unknown here, maybe known to a twin
  map.pin("web", key("10.0.0.3"), "b", kT0, AffinityMap::Source::twin);
  map.forget("web", key("10.0.0.2"), AffinityMap::Source::twin);
  EXPECT_EQ(observer.events,
            (std::vector<std::string>{"decided web 10.0.0.1 a", "moved web 10.0.0.1 b",
                                      "pinned web 10.0.0.2 a", "forgotten web 10.0.0.1",
                                      "forgotten web 10.0.0.9"}));
  EXPECT_EQ(map.lookup("web", key("10.0.0.3"), kT0, 1h), "b");
  EXPECT_EQ(map.lookup("web", key("10.0.0.2"), kT0, 1h), std::nullopt);
  store.flush();
  const auto rows = disk(store);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].client, "10.0.0.3");
  EXPECT_EQ(rows[0].node, "b");
  map.set_observer(nullptr);
  map.record("web", key("10.0.0.4"), "a", kT0);
  EXPECT_EQ(observer.events.size(), 5u);
}

}  // namespace
}  // namespace pb::affinity
