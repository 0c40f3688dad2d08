#include "protobalance/balance/agent.hpp"

#include <gtest/gtest.h>

namespace pb::balance {
namespace {

TEST(AgentReply, ParsesStateWordsWeightAndValues) {
  // Verifies every word kind, separators (comma, space, tab), case and the line end.
  const AgentReply reply = parse_agent_reply("UP, drain\t75%  cpu=0.72,sessions=130\r\n");
  ASSERT_EQ(reply.error, "");
  EXPECT_EQ(reply.up, true);
  EXPECT_EQ(reply.state, AdminState::draining);
  EXPECT_EQ(reply.weight_percent, 75U);
  ASSERT_EQ(reply.values.size(), 2U);
  EXPECT_EQ(reply.values[0].name, "cpu");
  EXPECT_DOUBLE_EQ(reply.values[0].value, 0.72);
  EXPECT_EQ(reply.values[1].name, "sessions");
  EXPECT_DOUBLE_EQ(reply.values[1].value, 130.0);
}

TEST(AgentReply, EachWordSetsOnlyItsField) {
  // Verifies down/maint/ready map to their fields and untouched fields stay empty.
  EXPECT_EQ(parse_agent_reply("down").up, false);
  EXPECT_FALSE(parse_agent_reply("down").state.has_value());
  EXPECT_EQ(parse_agent_reply("maint").state, AdminState::offline);
  EXPECT_EQ(parse_agent_reply("ready").state, AdminState::available);
  EXPECT_FALSE(parse_agent_reply("ready").up.has_value());
  EXPECT_EQ(parse_agent_reply("0%").weight_percent, 0U);
  EXPECT_EQ(parse_agent_reply("maint ready").state, AdminState::available);  // the later wins
  const auto twice = parse_agent_reply("cpu=1 cpu=2");
  ASSERT_EQ(twice.values.size(), 1U);
  EXPECT_DOUBLE_EQ(twice.values[0].value, 2.0);
}

TEST(AgentReply, GarbledRepliesCarryNothing) {
  // Verifies that an unknown word, a bad percentage or number, a bad or built-in name and an
  // empty line are errors, and that an error sets no other field.
  for (const char* line : {"", "\r\n", "stopped", "up 75", "x%", "1001%", "-5%", "cpu=", "cpu=abc",
                           "cpu=nan", "cpu=inf", "9cpu=1", "=1", "connections=3", "up cpu=0.5 bogus",
                           "drain 50%%"}) {
    const AgentReply reply = parse_agent_reply(line);
    EXPECT_NE(reply.error, "") << '"' << line << '"';
    EXPECT_FALSE(reply.up.has_value()) << line;
    EXPECT_FALSE(reply.state.has_value()) << line;
    EXPECT_FALSE(reply.weight_percent.has_value()) << line;
    EXPECT_TRUE(reply.values.empty()) << line;
  }
}

TEST(AgentReply, AtMost64Values) {
  // Verifies the bound on the number of values a reply may carry.
  std::string line;
  for (int i = 0; i < 64; ++i) line += "v" + std::to_string(i) + "=1 ";
  EXPECT_EQ(parse_agent_reply(line).values.size(), 64U);
  EXPECT_NE(parse_agent_reply(line + "v64=1").error, "");
}

}  // namespace
}  // namespace pb::balance
