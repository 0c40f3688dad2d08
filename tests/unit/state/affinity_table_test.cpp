#include "protobalance/state/affinity_table.hpp"

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

TEST(AffinityTable, ClientLookupsFindAddressesAndNetworks) {
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

TEST(AffinityTable, FindAffinityIsAPointQueryOfOneClient) {
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

TEST(AffinityTable, ExpiryWalksTheTableInBoundedSteps) {
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
  EXPECT_TRUE(eventually([&] { return on_disk(store).size() == kept.size(); }, test::in(10s)));
  EXPECT_EQ(on_disk(store), sorted(kept));
}

TEST(AffinityTable, LoadDeletesExpiredRows) {
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

TEST(AffinityTable, WriterDeletesExpiredRowsWithin10Seconds) {
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
  ASSERT_TRUE(eventually([&] { return on_disk(store).size() == 1; }, test::in(15s)));
  EXPECT_LE(Clock::now() - expired_at, 10s);
  EXPECT_EQ(on_disk(store).front().cluster, "other");
}

TEST(AffinityTable, ReadAffinityFileHandlesMissingFileAndFilters) {
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

}  // namespace
}  // namespace pb::state
