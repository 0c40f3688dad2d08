#include "protobalance/net/sni_routes.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

using Patterns = std::vector<std::string>;

SniRoutes make(const std::vector<Patterns>& routes) {
  SniRoutes r;
  for (const auto& patterns : routes) {
    const auto error = r.add(patterns);
    EXPECT_FALSE(error.has_value()) << *error;
  }
  return r;
}

TEST(SniRoutesTest, ExactAndWildcard) {
  // Verifies exact names and one-label wildcards match as specified, case-insensitively.
  const auto routes = make({{"api.example.com", "*.api.example.com"}, {"*.example.com"}});
  EXPECT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes.match("api.example.com"), 0u);
  EXPECT_EQ(routes.match("API.Example.COM"), 0u);
  EXPECT_EQ(routes.match("v2.api.example.com"), 0u);
  EXPECT_EQ(routes.match("www.example.com"), 1u);
  EXPECT_EQ(routes.match("WWW.EXAMPLE.COM"), 1u);
  EXPECT_FALSE(routes.match("example.com").has_value());         // *.a.b does not match a.b
  EXPECT_FALSE(routes.match("y.x.example.com").has_value());     // nor two labels before it
  EXPECT_FALSE(routes.match("x.y.api.example.com").has_value());
  EXPECT_FALSE(routes.match("api.example.org").has_value());
  EXPECT_FALSE(routes.match("").has_value());
  EXPECT_FALSE(routes.match(".example.com").has_value());
  EXPECT_FALSE(routes.match("xexample.com").has_value());
}

TEST(SniRoutesTest, CatchAll) {
  // Verifies "*" matches every name and no name, and an earlier specific route still wins.
  const auto routes = make({{"a.example"}, {"*"}, {"b.example"}});
  EXPECT_EQ(routes.match("a.example"), 0u);
  EXPECT_EQ(routes.match("b.example"), 1u);  // "*" comes first
  EXPECT_EQ(routes.match("anything.else"), 1u);
  EXPECT_EQ(routes.match(""), 1u);
  EXPECT_EQ(routes.match(std::string(300, 'a')), 1u);
}

TEST(SniRoutesTest, FirstMatchWins) {
  // Verifies the lowest route index wins whatever kind of pattern matched.
  const auto routes = make({{"*.example.com"}, {"www.example.com"}, {"*"}});
  EXPECT_EQ(routes.match("www.example.com"), 0u);
  const auto reversed = make({{"www.example.com"}, {"*.example.com"}, {"www.example.com"}});
  EXPECT_EQ(reversed.match("www.example.com"), 0u);
  EXPECT_EQ(reversed.match("mail.example.com"), 1u);
  EXPECT_FALSE(reversed.match("other.org").has_value());
}

TEST(SniRoutesTest, BadPatterns) {
  // Verifies bad patterns are refused with a message and add nothing.
  for (const char* bad : {"", "*.", "**.example.com", "a.*.example.com", "*example.com",
                          "example..com", "example.com.", "-a.example", "*.*", "a b"}) {
    EXPECT_TRUE(SniRoutes::check_pattern(bad).has_value()) << bad;
  }
  for (const char* good : {"*", "*.com", "localhost", "Api.Example.com", "*.a.b"}) {
    EXPECT_FALSE(SniRoutes::check_pattern(good).has_value()) << good;
  }
  SniRoutes routes;
  const auto error = routes.add(Patterns{"ok.example", "bad..example"});
  ASSERT_TRUE(error.has_value());
  EXPECT_NE(error->find("bad..example"), std::string::npos);
  EXPECT_EQ(routes.size(), 0u);
  EXPECT_FALSE(routes.match("ok.example").has_value());
}

TEST(SniRoutesTest, UppercasePatterns) {
  // Verifies patterns written in upper case match lower-case names.
  const auto routes = make({{"*.Example.COM"}, {"WWW.Other.Org"}});
  EXPECT_EQ(routes.match("x.example.com"), 0u);
  EXPECT_EQ(routes.match("www.other.org"), 1u);
}

}  // namespace
}  // namespace pb::net
