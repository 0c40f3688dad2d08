#include "protobalance/net/block_list.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "protobalance/net/guards.hpp"

namespace pb::net {
namespace {

namespace ip = boost::asio::ip;
using namespace std::chrono_literals;

const BlockClock::time_point kNow = BlockClock::time_point(std::chrono::seconds(1'800'000'000));

Block block(const char* network, std::string listener = "",
            std::optional<BlockClock::time_point> expires = std::nullopt) {
  const auto parsed = config::parse_network(network);
  EXPECT_TRUE(parsed.network.has_value()) << network << ": " << parsed.error;
  return Block{parsed.network.value_or(config::Network{}), std::move(listener), kNow - 1h, expires};
}

bool blocked(const BlockSet& set, const char* client, const char* listener = "web",
             BlockClock::time_point now = kNow) {
  return set.blocks(ip::make_address(client), listener, now);
}

TEST(BlockListTest, EmptySetBlocksNothingAndAppliesNowhere) {
  // Verifies a set without blocks refuses no client and asks no listener for the check.
  const BlockSet set;
  EXPECT_TRUE(set.empty());
  EXPECT_FALSE(set.applies_to("web"));
  EXPECT_FALSE(blocked(set, "192.0.2.7"));
  EXPECT_FALSE(set.next_expiry());
}

TEST(BlockListTest, AddressesAndNetworksOfBothFamilies) {
  // Verifies matching by address and by prefix: an IPv4 address and /24, an IPv6 /32 and
  // address; neighbours outside the networks pass.
  const BlockSet set({block("192.0.2.7"), block("198.51.100.0/24"), block("2001:db8::/32"),
                      block("2001:db8:ffff::1")});
  EXPECT_TRUE(blocked(set, "192.0.2.7"));
  EXPECT_FALSE(blocked(set, "192.0.2.8"));
  EXPECT_TRUE(blocked(set, "198.51.100.0"));
  EXPECT_TRUE(blocked(set, "198.51.100.255"));
  EXPECT_FALSE(blocked(set, "198.51.101.1"));
  EXPECT_TRUE(blocked(set, "2001:db8:1234::9"));
  EXPECT_FALSE(blocked(set, "2001:db9::1"));
  EXPECT_FALSE(blocked(set, "::1"));
}

TEST(BlockListTest, Ipv4MappedClientsMatchIpv4Blocks) {
  // Verifies an IPv4-mapped IPv6 client (a dual-stack listener's view of an IPv4 client) is
  // the IPv4 address for both the set and a single block, and an IPv6 /96 written in mapped form
  // covers IPv4 clients too.
  const BlockSet set({block("192.0.2.0/24")});
  EXPECT_TRUE(blocked(set, "::ffff:192.0.2.9"));
  EXPECT_FALSE(blocked(set, "::ffff:192.0.3.9"));
  EXPECT_TRUE(block("192.0.2.0/24").covers(ip::make_address("::ffff:192.0.2.9"), "web"));
  const BlockSet mapped({block("::ffff:203.0.113.0/120")});
  EXPECT_TRUE(blocked(mapped, "203.0.113.4"));
}

TEST(BlockListTest, ListenerBlocksApplyToTheirListenerOnly) {
  // Verifies a block of one listener refuses there only; a block of every listener refuses on
  // all; applies_to() names the listeners that need the check.
  const BlockSet set({block("192.0.2.7", "web"), block("198.51.100.1")});
  EXPECT_TRUE(blocked(set, "192.0.2.7", "web"));
  EXPECT_FALSE(blocked(set, "192.0.2.7", "mail"));
  EXPECT_TRUE(blocked(set, "198.51.100.1", "mail"));
  EXPECT_TRUE(set.applies_to("mail"));

  const BlockSet only_web({block("192.0.2.7", "web")});
  EXPECT_TRUE(only_web.applies_to("web"));
  EXPECT_FALSE(only_web.applies_to("mail"));
}

TEST(BlockListTest, ExpiredBlocksStopApplying) {
  // Verifies a block stops at its end even before the set is rebuilt, while a longer or
  // endless block of the same client still applies; next_expiry() is the earliest end.
  const BlockSet set({block("192.0.2.7", "", kNow + 10s), block("192.0.2.0/24", "mail"),
                      block("198.51.100.1", "", kNow + 60s)});
  EXPECT_EQ(set.next_expiry(), kNow + 10s);
  EXPECT_TRUE(blocked(set, "192.0.2.7", "web", kNow + 9s));
  EXPECT_FALSE(blocked(set, "192.0.2.7", "web", kNow + 10s));
  EXPECT_TRUE(blocked(set, "192.0.2.7", "mail", kNow + 10s));  // the endless /24 of mail
  EXPECT_TRUE(blocked(set, "198.51.100.1", "web", kNow + 59s));
  EXPECT_FALSE(blocked(set, "198.51.100.1", "web", kNow + 60s));
}

TEST(BlockListTest, NetworkTextIsCanonical) {
  // Verifies the text stored and shown: a whole address alone, a network with its length, IPv6
  // in its canonical lower-case form.
  EXPECT_EQ(network_text(block("192.0.2.7").network), "192.0.2.7");
  EXPECT_EQ(network_text(block("192.0.2.0/24").network), "192.0.2.0/24");
  EXPECT_EQ(network_text(block("2001:DB8::/32").network), "2001:db8::/32");
  EXPECT_EQ(network_text(block("2001:db8:0::1").network), "2001:db8::1");
  EXPECT_EQ(network_text(block("0.0.0.0/0").network), "0.0.0.0/0");
}

TEST(BlockListTest, SharedListPublishesWholeSets) {
  // Verifies the shared list starts empty and hands out the set last published, and that a
  // reader keeps the set it took while a new one is published.
  BlockList list;
  EXPECT_TRUE(list.current()->empty());
  list.publish(std::make_shared<const BlockSet>(std::vector<Block>{block("192.0.2.7")}));
  const auto taken = list.current();
  list.publish(std::make_shared<const BlockSet>());
  EXPECT_TRUE(blocked(*taken, "192.0.2.7"));
  EXPECT_FALSE(blocked(*list.current(), "192.0.2.7"));
}

TEST(BlockListTest, PerThreadCopyFollowsEveryPublishOfEveryList) {
  // Verifies current_here(): the calling thread sees each publish at its next call, another
  // thread sees the same set, and two lists read alternately on one thread never mix.
  BlockList a;
  BlockList b;
  EXPECT_TRUE(a.current_here().empty());
  a.publish(std::make_shared<const BlockSet>(std::vector<Block>{block("192.0.2.7")}));
  EXPECT_TRUE(blocked(a.current_here(), "192.0.2.7"));
  EXPECT_TRUE(b.current_here().empty());
  b.publish(std::make_shared<const BlockSet>(std::vector<Block>{block("198.51.100.1")}));
  EXPECT_FALSE(blocked(b.current_here(), "192.0.2.7"));
  EXPECT_TRUE(blocked(b.current_here(), "198.51.100.1"));
  EXPECT_TRUE(blocked(a.current_here(), "192.0.2.7"));
  a.publish(std::make_shared<const BlockSet>());
  EXPECT_FALSE(blocked(a.current_here(), "192.0.2.7"));
  bool other_thread_sees = false;
  std::thread([&] { other_thread_sees = blocked(b.current_here(), "198.51.100.1"); }).join();
  EXPECT_TRUE(other_thread_sees);
}

TEST(BlockListTest, BlockCheckPhaseRefusesBlockedClients) {
  // Verifies the client phase: decides from the client's address without bytes, refuses a
  // blocked client with reason `blocked`, passes others, and follows the list as it changes.
  auto list = std::make_shared<BlockList>();
  const BlockCheck phase("web", list);
  EXPECT_EQ(phase.max_peek(), 0u);
  EXPECT_EQ(phase.reject_reason(), RejectReason::blocked);
  EXPECT_EQ(to_string(RejectReason::blocked), "blocked");

  ClientFacts facts;
  facts.source = ip::tcp::endpoint(ip::make_address("192.0.2.7"), 40000);
  EXPECT_EQ(phase.inspect({}, false, facts).kind, Verdict::Kind::pass);
  Block forever = block("192.0.2.0/24");
  forever.expires.reset();
  list->publish(std::make_shared<const BlockSet>(std::vector<Block>{forever}));
  EXPECT_EQ(phase.inspect({}, false, facts).kind, Verdict::Kind::reject);
  facts.source = ip::tcp::endpoint(ip::make_address("192.0.3.7"), 40000);
  EXPECT_EQ(phase.inspect({}, false, facts).kind, Verdict::Kind::pass);

  // The phase reads the clock: a block that ended an hour ago refuses nothing.
  Block ended = block("192.0.3.0/24", "", BlockClock::now() - 1h);
  list->publish(std::make_shared<const BlockSet>(std::vector<Block>{ended}));
  EXPECT_EQ(phase.inspect({}, false, facts).kind, Verdict::Kind::pass);
}

}  // namespace
}  // namespace pb::net
