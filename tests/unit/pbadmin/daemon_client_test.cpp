#include "protobalance/pbadmin/daemon_client.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace pb::pbadmin {
namespace {

TEST(DaemonClient, PercentEncodingKeepsOnlyUnreservedCharacters) {
  // Verifies that names go into request targets safely: everything but RFC 3986's unreserved
  // characters is escaped, in upper-case hex.
  EXPECT_EQ(percent_encode("web-1.a_b~"), "web-1.a_b~");
  EXPECT_EQ(percent_encode("a b/c"), "a%20b%2Fc");
  EXPECT_EQ(percent_encode("2001:db8::/64"), "2001%3Adb8%3A%3A%2F64");
  EXPECT_EQ(percent_encode(""), "");
}

TEST(DaemonClient, TextOfAnswerMembers) {
  // Verifies how members of an answer print: strings as they are, other values as JSON, absent
  // or null as "".
  const auto answer = boost::json::parse(R"({"s":"x","n":3,"z":null})").as_object();
  EXPECT_EQ(text_of(answer, "s"), "x");
  EXPECT_EQ(text_of(answer, "n"), "3");
  EXPECT_EQ(text_of(answer, "z"), "");
  EXPECT_EQ(text_of(answer, "missing"), "");
}

}  // namespace
}  // namespace pb::pbadmin
