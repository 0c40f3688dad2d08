// Unit tests of the balance one-line syntax of quick mode (quick_syntax.hpp).
#include "protobalance/config/quick_syntax.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace pb::config {
namespace {

using Key = std::array<std::uint8_t, 16>;
using Args = std::vector<std::string>;

QuickLine parse_ok(const Args& args) {
  auto result = parse_balance_line(args);
  if (auto* error = std::get_if<QuickSyntaxError>(&result)) {
    ADD_FAILURE() << "unexpected error: " << error->to_string();
    return {};
  }
  return std::get<QuickLine>(result);
}

QuickSyntaxError parse_error(const Args& args) {
  auto result = parse_balance_line(args);
  if (std::holds_alternative<QuickLine>(result)) {
    ADD_FAILURE() << "expected an error";
    return {};
  }
  return std::get<QuickSyntaxError>(result);
}

TEST(QuickSyntax, GroupsBecomeTiersWithLimits) {
  // Verifies the seed's example: '!' separates groups that become tiers 1, 2, 3, and "::N" sets
  // max_connections with the port left to the listening port.
  const QuickLine line = parse_ok({"alpha::256", "!", "beta::64", "!", "failover"});
  ASSERT_EQ(line.nodes.size(), 3U);
  EXPECT_EQ(line.nodes[0].host, "alpha");
  EXPECT_FALSE(line.nodes[0].port);
  EXPECT_EQ(line.nodes[0].max_connections, 256U);
  EXPECT_EQ(line.nodes[0].tier, 1U);
  EXPECT_EQ(line.nodes[1].host, "beta");
  EXPECT_EQ(line.nodes[1].max_connections, 64U);
  EXPECT_EQ(line.nodes[1].tier, 2U);
  EXPECT_EQ(line.nodes[2].host, "failover");
  EXPECT_EQ(line.nodes[2].max_connections, 0U);
  EXPECT_EQ(line.nodes[2].tier, 3U);
  EXPECT_EQ(line.nodes[2].argument, 4U);
  EXPECT_EQ(line.hashed, (std::vector<bool>{false, false, false}));
  EXPECT_FALSE(line.any_hashed());
  EXPECT_EQ(line.nodes[0].address(8080), "alpha:8080");
}

TEST(QuickSyntax, AllFieldsAndEmptyFields) {
  // Verifies HOST:PORT:MAX:LOAD, and that each empty field keeps its default.
  const QuickLine line =
      parse_ok({"alpha:8081:256:3", "beta:::0.5", "gamma:9000", "delta::", "10.0.0.1:81::2"});
  ASSERT_EQ(line.nodes.size(), 5U);
  EXPECT_EQ(line.nodes[0].port, std::optional<std::uint16_t>(8081));
  EXPECT_EQ(line.nodes[0].max_connections, 256U);
  EXPECT_DOUBLE_EQ(line.nodes[0].load_factor, 3.0);
  EXPECT_FALSE(line.nodes[1].port);
  EXPECT_EQ(line.nodes[1].max_connections, 0U);
  EXPECT_DOUBLE_EQ(line.nodes[1].load_factor, 0.5);
  EXPECT_EQ(line.nodes[2].port, std::optional<std::uint16_t>(9000));
  EXPECT_DOUBLE_EQ(line.nodes[2].load_factor, 1.0);
  EXPECT_FALSE(line.nodes[3].port);
  EXPECT_EQ(line.nodes[4].host, "10.0.0.1");
  EXPECT_EQ(line.nodes[4].address(1), "10.0.0.1:81");
  EXPECT_DOUBLE_EQ(line.nodes[4].load_factor, 2.0);
  for (const auto& node : line.nodes) EXPECT_EQ(node.tier, 1U);
}

TEST(QuickSyntax, Ipv6InBrackets) {
  // Verifies bracketed IPv6 hosts with and without the further fields.
  const QuickLine line = parse_ok({"[2001:db8::1]:8081:256", "[::1]", "[::1]::7:2"});
  ASSERT_EQ(line.nodes.size(), 3U);
  EXPECT_EQ(line.nodes[0].host, "2001:db8::1");
  EXPECT_TRUE(line.nodes[0].bracketed);
  EXPECT_EQ(line.nodes[0].port, std::optional<std::uint16_t>(8081));
  EXPECT_EQ(line.nodes[0].max_connections, 256U);
  EXPECT_EQ(line.nodes[0].address(1), "[2001:db8::1]:8081");
  EXPECT_FALSE(line.nodes[1].port);
  EXPECT_EQ(line.nodes[1].address(8080), "[::1]:8080");
  EXPECT_EQ(line.nodes[2].max_connections, 7U);
  EXPECT_DOUBLE_EQ(line.nodes[2].load_factor, 2.0);
}

TEST(QuickSyntax, PercentMarksAHashGroupAndEndsIt) {
  // Verifies that '%' makes the group before it a hash group, ends it like '!', and that
  // "% !" counts as one separator.
  const QuickLine a = parse_ok({"alpha", "beta", "%"});
  EXPECT_EQ(a.hashed, (std::vector<bool>{true}));
  EXPECT_TRUE(a.any_hashed());

  const QuickLine b = parse_ok({"alpha", "beta", "%", "!", "failover"});
  ASSERT_EQ(b.nodes.size(), 3U);
  EXPECT_EQ(b.nodes[2].tier, 2U);
  EXPECT_EQ(b.hashed, (std::vector<bool>{true, false}));

  const QuickLine c = parse_ok({"alpha", "%", "beta", "gamma", "%"});
  EXPECT_EQ(c.nodes[1].tier, 2U);
  EXPECT_EQ(c.hashed, (std::vector<bool>{true, true}));
}

TEST(QuickSyntax, ErrorsNameTheArgument) {
  // Verifies that each malformed line is refused with the offending argument named.
  EXPECT_EQ(parse_error({}).message, "no node given");
  EXPECT_EQ(parse_error({"!", "a"}).argument, "!");
  EXPECT_EQ(parse_error({"a", "!"}).argument, "!");
  EXPECT_NE(parse_error({"a", "!", "!", "b"}).message.find("empty group"), std::string::npos);
  EXPECT_EQ(parse_error({"%"}).argument, "%");
  EXPECT_EQ(parse_error({"a", "%", "%"}).argument, "%");
  EXPECT_EQ(parse_error({"a", "%", "!"}).argument, "!");
  EXPECT_EQ(parse_error({"a", "%", "!", "!", "b"}).argument, "!");

  const QuickSyntaxError port = parse_error({"a", "b:70000"});
  EXPECT_EQ(port.argument, "b:70000");
  EXPECT_NE(port.message.find("port must be 1..65535"), std::string::npos);
  EXPECT_EQ(parse_error({"b:0"}).argument, "b:0");
  EXPECT_EQ(parse_error({"b:x"}).argument, "b:x");
  EXPECT_NE(parse_error({"b::-1"}).message.find("max_connections"), std::string::npos);
  EXPECT_NE(parse_error({"b::4294967296"}).message.find("max_connections"), std::string::npos);
  EXPECT_NE(parse_error({"b:::0"}).message.find("load_factor"), std::string::npos);
  EXPECT_NE(parse_error({"b:::nan"}).message.find("load_factor"), std::string::npos);
  EXPECT_NE(parse_error({"b:::2x"}).message.find("load_factor"), std::string::npos);
  EXPECT_NE(parse_error({"b:::1000001"}).message.find("load_factor"), std::string::npos);
  EXPECT_NE(parse_error({"b:1:2:3:4"}).message.find("too many"), std::string::npos);
  EXPECT_NE(parse_error({"2001:db8::1"}).message.find("brackets"), std::string::npos);
  EXPECT_EQ(parse_error({":80"}).argument, ":80");
  EXPECT_EQ(parse_error({""}).argument, "");
  EXPECT_NE(parse_error({"[::1"}).message.find("']'"), std::string::npos);
  EXPECT_NE(parse_error({"[::1]80"}).message.find("':'"), std::string::npos);
  EXPECT_NE(parse_error({"[]:80"}).message.find("empty"), std::string::npos);
  EXPECT_EQ(parse_error({"a", "[::1]:1:2:3:4"}).argument, "[::1]:1:2:3:4");
}

TEST(QuickSyntax, AlgorithmOfTheLine) {
  // Verifies which algorithm a line means, and the refusals where one algorithm per cluster
  // cannot do what the line asks.
  const auto algorithm = [](const Args& args, std::optional<std::string> requested) {
    return quick_algorithm(parse_ok(args), requested);
  };
  EXPECT_EQ(std::get<std::string>(algorithm({"a", "b"}, std::nullopt)), "round_robin");
  EXPECT_EQ(std::get<std::string>(algorithm({"a", "b"}, "least_connections")),
            "least_connections");
  EXPECT_EQ(std::get<std::string>(algorithm({"a", "b", "%"}, std::nullopt)), "hash");
  EXPECT_EQ(std::get<std::string>(algorithm({"a", "b", "%"}, "hash")), "hash");
  // A single-node group has one candidate: hashing it or not is the same.
  EXPECT_EQ(std::get<std::string>(algorithm({"a", "b", "%", "!", "c"}, std::nullopt)), "hash");
  EXPECT_EQ(std::get<std::string>(algorithm({"c", "!", "a", "b", "%"}, std::nullopt)), "hash");

  const auto mixed = std::get<QuickSyntaxError>(algorithm({"a", "b", "%", "c", "d"}, std::nullopt));
  EXPECT_EQ(mixed.argument, "c");
  EXPECT_NE(mixed.message.find("one algorithm"), std::string::npos);
  const auto other = std::get<QuickSyntaxError>(algorithm({"a", "b", "%"}, "random"));
  EXPECT_EQ(other.argument, "--algorithm random");
}

TEST(QuickSyntax, HashKeyHex) {
  // Verifies the built-in key's spelling and the refusal of malformed keys.
  const auto key = std::get<Key>(parse_hash_key_hex(kQuickHashKeyHex));
  EXPECT_EQ(std::string(key.begin(), key.end()), "protobalance-key");
  const auto upper = parse_hash_key_hex("000102030405060708090A0B0C0D0E0F");
  ASSERT_TRUE(std::holds_alternative<Key>(upper));
  EXPECT_EQ(std::get<Key>(upper)[15], 15);
  EXPECT_NE(std::get<std::string>(parse_hash_key_hex("00")).find("32 hex digits"), std::string::npos);
  EXPECT_NE(std::get<std::string>(parse_hash_key_hex("000102030405060708090a0b0c0d0e0g"))
                .find("offset 31"),
            std::string::npos);
}

}  // namespace
}  // namespace pb::config
