#include "protobalance/net/client_limits.hpp"

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

namespace ip = boost::asio::ip;
using namespace std::chrono_literals;
using Clock = ClientLimits::Clock;
using Verdict = ClientLimits::Verdict;

ip::address addr(const char* text) { return ip::make_address(text); }

// The n-th of many distinct IPv4 addresses.
ip::address nth_v4(std::uint32_t n) { return ip::address_v4(0x0A000000u + n); }

TEST(ClientLimitsTest, ParseRate) {
  // Verifies "N/PERIOD" parses with the config's duration units and bad forms are refused.
  EXPECT_EQ(parse_rate_limit("20/1s").limit, (RateLimit{20, 1000ms}));
  EXPECT_EQ(parse_rate_limit("300/1m").limit, (RateLimit{300, 60000ms}));
  EXPECT_EQ(parse_rate_limit("1/500ms").limit, (RateLimit{1, 500ms}));
  EXPECT_EQ(parse_rate_limit("1000000/1d").limit, (RateLimit{1000000, 86400000ms}));
  for (const char* bad : {"", "20", "/1s", "20/", "0/1s", "020/1s", "20/0s", "-1/1s", "20/1x",
                          "20 /1s", "1000001/1s", "20/2d", "20/1s/1s", "1.5/1s"}) {
    const auto r = parse_rate_limit(bad);
    EXPECT_FALSE(r.limit.has_value()) << bad;
    EXPECT_NE(r.error.find("20/1s"), std::string::npos) << bad;
  }
}

TEST(ClientLimitsTest, ConcurrentConnections) {
  // Verifies the per-client connection limit counts open connections and frees on release.
  auto limits = ClientLimits::create({.max_connections = 2, .rate = {}, .capacity = 64});
  const auto now = Clock::time_point{} + 1h;
  auto a = limits->admit(addr("192.0.2.1"), now);
  auto b = limits->admit(addr("192.0.2.1"), now);
  EXPECT_EQ(a.verdict, Verdict::accepted);
  EXPECT_TRUE(a.ticket.holds());
  EXPECT_EQ(b.verdict, Verdict::accepted);
  auto c = limits->admit(addr("192.0.2.1"), now);
  EXPECT_EQ(c.verdict, Verdict::connection_limit);
  EXPECT_FALSE(c.ticket.holds());
  EXPECT_EQ(limits->admit(addr("::ffff:192.0.2.1"), now).verdict, Verdict::connection_limit);
  EXPECT_EQ(limits->admit(addr("192.0.2.2"), now).verdict, Verdict::accepted);
  a.ticket.release();
  auto d = limits->admit(addr("192.0.2.1"), now);
  EXPECT_EQ(d.verdict, Verdict::accepted);
  {
    auto moved = std::move(d.ticket);
    EXPECT_FALSE(d.ticket.holds());
  }  // released here
  EXPECT_EQ(limits->admit(addr("192.0.2.1"), now).verdict, Verdict::accepted);
  b.ticket.release();
  EXPECT_EQ(limits->tracked(), 0u);  // no rate limit: idle entries are dropped at once
}

TEST(ClientLimitsTest, Ipv6KeyedBySlash64) {
  // Verifies IPv6 clients in one /64 share a count and another /64 does not.
  auto limits = ClientLimits::create({.max_connections = 1, .rate = {}, .capacity = 64});
  const auto now = Clock::time_point{} + 1h;
  auto a = limits->admit(addr("2001:db8:1:2::1"), now);
  EXPECT_EQ(a.verdict, Verdict::accepted);
  EXPECT_EQ(limits->admit(addr("2001:db8:1:2:ffff::9"), now).verdict,
            Verdict::connection_limit);
  auto b = limits->admit(addr("2001:db8:1:3::1"), now);
  EXPECT_EQ(b.verdict, Verdict::accepted);
  EXPECT_EQ(limits->tracked(), 2u);
}

TEST(ClientLimitsTest, TokenBucket) {
  // Verifies a burst of N, then one more per PERIOD/N, with time driven by the test.
  auto limits =
      ClientLimits::create({.max_connections = 0, .rate = RateLimit{3, 1000ms}, .capacity = 64});
  auto now = Clock::time_point{} + 1h;
  const auto client = addr("198.51.100.4");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limits->admit(client, now).verdict, Verdict::accepted);
  EXPECT_EQ(limits->admit(client, now).verdict, Verdict::rate_limit);
  EXPECT_EQ(limits->admit(addr("198.51.100.5"), now).verdict, Verdict::accepted);
  now += 300ms;  // not yet one token (333 ms)
  EXPECT_EQ(limits->admit(client, now).verdict, Verdict::rate_limit);
  now += 40ms;
  EXPECT_EQ(limits->admit(client, now).verdict, Verdict::accepted);
  EXPECT_EQ(limits->admit(client, now).verdict, Verdict::rate_limit);
  now += 10s;  // bucket full again, but never more than the burst
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limits->admit(client, now).verdict, Verdict::accepted);
  EXPECT_EQ(limits->admit(client, now).verdict, Verdict::rate_limit);

  // Counted over a window: 10 s at one attempt per 10 ms gives the burst + 3 per second.
  int accepted = 0;
  const auto start = now + 10s;
  for (int i = 0; i < 1000; ++i) {
    if (limits->admit(client, start + i * 10ms).verdict == Verdict::accepted) ++accepted;
  }
  EXPECT_GE(accepted, 3 + 29);
  EXPECT_LE(accepted, 3 + 30);
}

TEST(ClientLimitsTest, RefusalsSpendNothing) {
  // Verifies a connection refused by the connection limit spends no token.
  auto limits = ClientLimits::create(
      {.max_connections = 1, .rate = RateLimit{2, 1000ms}, .capacity = 64});
  const auto now = Clock::time_point{} + 1h;
  auto held = limits->admit(addr("192.0.2.7"), now);
  ASSERT_EQ(held.verdict, Verdict::accepted);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(limits->admit(addr("192.0.2.7"), now).verdict, Verdict::connection_limit);
  }
  held.ticket.release();
  EXPECT_EQ(limits->admit(addr("192.0.2.7"), now).verdict, Verdict::accepted);  // 2nd token
}

TEST(ClientLimitsTest, QuietEntriesAreReclaimed) {
  // Verifies entries are dropped once their bucket is full again and no connection is open.
  auto limits = ClientLimits::create(
      {.max_connections = 5, .rate = RateLimit{10, 1000ms}, .capacity = 1000});
  auto now = Clock::time_point{} + 1h;
  auto held = limits->admit(nth_v4(0), now);
  for (std::uint32_t i = 1; i < 100; ++i) {
    EXPECT_EQ(limits->admit(nth_v4(i), now).verdict, Verdict::accepted);
  }
  EXPECT_EQ(limits->tracked(), 100u);
  limits->reclaim(now + 50ms);
  EXPECT_EQ(limits->tracked(), 100u);  // buckets not yet full again
  limits->reclaim(now + 100ms);
  EXPECT_EQ(limits->tracked(), 1u);  // only the client with an open connection
  held.ticket.release();
  limits->reclaim(now + 100ms);
  EXPECT_EQ(limits->tracked(), 0u);
}

TEST(ClientLimitsTest, MemoryBoundUnderFlood) {
  // Verifies 100,000 distinct clients never grow the table past its capacity, clients holding
  // connections keep their counts, and the overflow is admitted untracked and counted.
  auto limits = ClientLimits::create(
      {.max_connections = 1, .rate = RateLimit{5, 60000ms}, .capacity = 1024});
  const std::size_t capacity = limits->capacity();
  EXPECT_GE(capacity, 1024u);
  EXPECT_LT(capacity, 1024u + ClientLimits::kShards);
  const auto now = Clock::time_point{} + 1h;

  std::vector<ClientLimits::Ticket> held;
  for (std::uint32_t i = 0; i < 100; ++i) {
    auto a = limits->admit(nth_v4(i), now);
    ASSERT_EQ(a.verdict, Verdict::accepted);
    held.push_back(std::move(a.ticket));
  }
  std::size_t max_tracked = 0;
  for (std::uint32_t i = 100; i < 100'000; ++i) {
    auto a = limits->admit(nth_v4(i), now);  // one short connection each
    ASSERT_EQ(a.verdict, Verdict::accepted);
    if (i % 1000 == 0) max_tracked = std::max(max_tracked, limits->tracked());
  }
  EXPECT_LE(max_tracked, capacity);
  EXPECT_LE(limits->tracked(), capacity);
  EXPECT_LE(limits->slots(), capacity);
  EXPECT_GE(limits->tracked(), capacity / 2);  // the table is used, not emptied
  EXPECT_EQ(limits->untracked(), 0u);          // idle entries were there to reclaim
  for (std::uint32_t i = 0; i < 100; ++i) {
    EXPECT_EQ(limits->admit(nth_v4(i), now).verdict, Verdict::connection_limit) << i;
  }

  // A table full of clients that all hold connections admits newcomers untracked.
  auto pinned = ClientLimits::create({.max_connections = 1, .rate = {}, .capacity = 16});
  std::vector<ClientLimits::Ticket> all;
  for (std::uint32_t i = 0; i < 1000; ++i) {
    auto a = pinned->admit(nth_v4(i), now);
    ASSERT_EQ(a.verdict, Verdict::accepted);
    all.push_back(std::move(a.ticket));
  }
  EXPECT_LE(pinned->tracked(), pinned->capacity());
  EXPECT_EQ(pinned->untracked() + pinned->tracked(), 1000u);
  all.clear();
  EXPECT_EQ(pinned->tracked(), 0u);
}

TEST(ClientLimitsTest, SharedByThreads) {
  // Verifies the connection limit holds across threads sharing one instance (per process).
  auto limits = ClientLimits::create({.max_connections = 50, .rate = {}, .capacity = 256});
  const auto now = Clock::time_point{} + 1h;
  std::atomic<int> accepted{0};
  std::vector<std::vector<ClientLimits::Ticket>> held(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        auto a = limits->admit(addr("203.0.113.9"), now);
        if (a.verdict == Verdict::accepted) {
          ++accepted;
          held[static_cast<std::size_t>(t)].push_back(std::move(a.ticket));
        }
        // Churn on other clients in the meantime.
        auto other = limits->admit(nth_v4(static_cast<std::uint32_t>(t * 1000 + i)), now);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(accepted.load(), 50);
  held.clear();
  EXPECT_EQ(limits->tracked(), 0u);
}

}  // namespace
}  // namespace pb::net
