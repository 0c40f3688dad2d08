#include "protobalance/pbadmin/database_reader.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace pb::pbadmin {
namespace {

using affinity::AffinityRow;
using namespace std::chrono_literals;

TEST(DatabaseReader, SelectionSortsNumericallyAndDropsExpiredRows) {
  // Verifies that selection sorts clients numerically (10.0.0.9 before 10.0.0.10) and drops
  // expired rows by each cluster's TTL, the fallback TTL for the others.
  const auto now = affinity::Clock::time_point(std::chrono::seconds(1'000'000));
  std::vector<AffinityRow> rows{{"b", "10.0.0.10", "n", 0, 999'990, 1},
                                {"b", "10.0.0.9", "n", 0, 999'990, 1},
                                {"a", "10.0.0.1", "n", 0, 999'000, 1},  // a: ttl 10 min
                                {"a", "10.0.0.2", "n", 0, 999'990, 1}};
  const affinity::TtlTable ttls{{{"a", 10min}}, 1h};
  const auto selected = select_affinity(rows, AffinityFilter{}, ttls, now);
  ASSERT_EQ(selected.size(), 3u);
  EXPECT_EQ(selected[0].client, "10.0.0.2");
  EXPECT_EQ(selected[1].client, "10.0.0.9");
  EXPECT_EQ(selected[2].client, "10.0.0.10");
}

TEST(DatabaseReader, SelectionFiltersByClusterNodeAndNetwork) {
  // Verifies the filters of `affinity list`: cluster, node, and a network that keeps the entries
  // overlapping it.
  const auto now = affinity::Clock::time_point(std::chrono::seconds(1'000'000));
  std::vector<AffinityRow> rows{{"web", "192.0.2.1", "alpha", 0, 999'990, 1},
                                {"web", "192.0.2.2", "beta", 0, 999'990, 1},
                                {"web", "198.51.100.1", "alpha", 0, 999'990, 1},
                                {"mail", "192.0.2.1", "alpha", 0, 999'990, 1}};
  const affinity::TtlTable ttls{{}, 1h};
  AffinityFilter filter{"web", "alpha", affinity::parse_client("192.0.2.0/24")};
  const auto selected = select_affinity(rows, filter, ttls, now);
  ASSERT_EQ(selected.size(), 1u);
  EXPECT_EQ(selected[0].cluster, "web");
  EXPECT_EQ(selected[0].client, "192.0.2.1");
  EXPECT_EQ(selected[0].node, "alpha");
}

}  // namespace
}  // namespace pb::pbadmin
