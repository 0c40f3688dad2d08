#include "protobalance/affinity/entry_store.hpp"

#include <gtest/gtest.h>

namespace pb::affinity {
namespace {

using namespace std::chrono_literals;

TEST(EntryStore, ExpiryCutoffIsNeverLate) {
  // Verifies the shared expiry rule: an entry seen in second L is expired once now - ttl passes
  // the start of L, i.e. possibly a fraction of a second early, never late.
  const auto at = [](std::int64_t ms) { return Clock::time_point(std::chrono::milliseconds(ms)); };
  // last_seen 100 (the use happened somewhere in [100, 101)), ttl 10 s.
  EXPECT_FALSE(100 < expiry_cutoff(at(110'000), 10s));  // exactly ttl after the second's start
  EXPECT_TRUE(100 < expiry_cutoff(at(110'001), 10s));
  EXPECT_FALSE(100 < expiry_cutoff(at(100'500), 10s));
}

TEST(EntryStore, TtlOfAClusterNotConfiguredIsTheFallback) {
  // Verifies that rows of a cluster removed from the configuration expire under the fallback
  // TTL, and configured clusters under their own.
  config::Config cfg;
  cfg.clusters.emplace_back();
  cfg.clusters.back().name = "web";
  cfg.clusters.back().affinity.ttl = 60s;
  TtlTable table = make_ttl_table(cfg);
  table.fallback = 1h;
  EXPECT_EQ(table.ttl_for("web"), config::Duration(60s));
  EXPECT_EQ(table.ttl_for("gone"), config::Duration(1h));
}

}  // namespace
}  // namespace pb::affinity
