// The twin link's record parser and writer (state/twin_record.hpp), alone: no Redis needed.
#include "protobalance/state/twin_record.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace pb::state {
namespace {

using namespace std::chrono_literals;
using Kind = TwinMessage::Kind;

SystemTime at(std::int64_t unix_seconds) {
  return SystemTime{std::chrono::seconds(unix_seconds)};
}

TEST(TwinRecord, EachKindParsesWithTheFieldsOfItsKeyAndValue) {
  // Verifies that an affinity, node state, route and block record each give the message their
  // key and value say, with a binary client key from the hex and the affinity's ttl from Redis.
  const auto affinity = parse_twin_record("a:web:00ff7f", "1 alpha 1796000000 lb1", 3600);
  ASSERT_TRUE(affinity);
  EXPECT_EQ(affinity->kind, Kind::affinity);
  EXPECT_EQ(affinity->affinity.cluster, "web");
  EXPECT_EQ(affinity->affinity.key, std::string("\x00\xff\x7f", 3));
  EXPECT_EQ(affinity->affinity.node, "alpha");
  EXPECT_EQ(affinity->affinity.last_seen, at(1796000000));
  EXPECT_EQ(affinity->affinity.ttl, 3600s);
  EXPECT_EQ(affinity->instance, "lb1");

  const auto state = parse_twin_record("n:web:alpha", "1 draining lb2", -1);
  ASSERT_TRUE(state);
  EXPECT_EQ(state->kind, Kind::node_state);
  EXPECT_EQ(state->cluster, "web");
  EXPECT_EQ(state->node, "alpha");
  EXPECT_EQ(state->state, "draining");
  EXPECT_EQ(state->instance, "lb2");

  const auto route = parse_twin_record("r:web", "1 maintenance lb1", -1);
  ASSERT_TRUE(route);
  EXPECT_EQ(route->kind, Kind::route);
  EXPECT_EQ(route->name, "web");
  EXPECT_EQ(route->target, "maintenance");

  const auto block = parse_twin_record("b:2001:db8::/32@web", "1 1796000000 lb2", 60);
  ASSERT_TRUE(block);
  EXPECT_EQ(block->kind, Kind::block);
  EXPECT_EQ(block->name, "2001:db8::/32@web");
  EXPECT_EQ(block->until, at(1796000000));
  const auto forever = parse_twin_record("b:192.0.2.0/24", "1 0 lb2", -1);
  ASSERT_TRUE(forever);
  EXPECT_EQ(forever->until, SystemTime{});
}

TEST(TwinRecord, WrittenRecordsParseBackToTheSameMessage) {
  // Verifies that the key and value the link writes for each kind parse back to the message,
  // with its instance as the writer; and that deletions (forget, unblock, route reset) have the
  // record's key and no value.
  TwinMessage affinity;
  affinity.kind = Kind::affinity;
  affinity.instance = "lb1";
  affinity.affinity = {"in:ner", std::string("\x00 \n\xff", 4), "alpha", at(1796000123), 90s};
  EXPECT_EQ(twin_record_key(affinity), "a:in:ner:00200aff");
  EXPECT_EQ(twin_record_value(affinity), "1 alpha 1796000123 lb1");
  EXPECT_EQ(parse_twin_record(twin_record_key(affinity), twin_record_value(affinity), 90),
            affinity);

  TwinMessage state;
  state.kind = Kind::node_state;
  state.instance = "lb1";
  state.cluster = "web";
  state.node = "a:b";
  state.state = "offline";
  EXPECT_EQ(parse_twin_record(twin_record_key(state), twin_record_value(state), -1), state);

  TwinMessage route;
  route.kind = Kind::route;
  route.instance = "lb1";
  route.name = "web";
  route.target = "spare";
  EXPECT_EQ(parse_twin_record(twin_record_key(route), twin_record_value(route), -1), route);
  route.target.clear();
  EXPECT_EQ(twin_record_value(route), "");

  TwinMessage block;
  block.kind = Kind::block;
  block.instance = "lb1";
  block.name = "192.0.2.0/24@web";
  block.until = at(1796000000);
  EXPECT_EQ(twin_record_key(block), "b:192.0.2.0/24@web");
  EXPECT_EQ(parse_twin_record(twin_record_key(block), twin_record_value(block), 10), block);

  TwinMessage unblock = block;
  unblock.kind = Kind::unblock;
  EXPECT_EQ(twin_record_key(unblock), twin_record_key(block));
  EXPECT_EQ(twin_record_value(unblock), "");
  TwinMessage forget = affinity;
  forget.kind = Kind::forget;
  EXPECT_EQ(twin_record_key(forget), twin_record_key(affinity));
  EXPECT_EQ(twin_record_value(forget), "");
}

TEST(TwinRecord, ClientKeyThatIsNotLowerCaseHexIsRefused) {
  // Verifies that an affinity key whose client part has an odd length, upper-case or non-hex
  // digits, or no colon before it, gives no message; an empty client part is an empty key.
  const char* value = "1 alpha 1796000000 lb1";
  EXPECT_FALSE(parse_twin_record("a:web:7F000001", value, 60));
  EXPECT_FALSE(parse_twin_record("a:web:7f00001", value, 60));
  EXPECT_FALSE(parse_twin_record("a:web:7g000001", value, 60));
  EXPECT_FALSE(parse_twin_record("a:7f000001", value, 60));
  const auto empty = parse_twin_record("a:web:", value, 60);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->affinity.key, "");
}

TEST(TwinRecord, TimesBeyondTheClockAreNotTakenAsTimes) {
  // Verifies that a LAST_SEEN beyond 64 bits or beyond what the system clock holds (about year
  // 2262; converting it would overflow) refuses the affinity record, while the edge of the clock
  // is accepted; and that a block's UNTIL of that kind, like one that is not a number, counts as
  // a block without end.
  EXPECT_FALSE(parse_twin_record("a:web:01", "1 alpha 99999999999999999999 lb1", 60));
  EXPECT_FALSE(parse_twin_record("a:web:01", "1 alpha 9223372037 lb1", 60));
  EXPECT_FALSE(parse_twin_record("a:web:01", "1 alpha -9223372037 lb1", 60));
  EXPECT_FALSE(parse_twin_record("a:web:01", "1 alpha soon lb1", 60));
  const auto edge = parse_twin_record("a:web:01", "1 alpha 9223372036 lb1", 60);
  ASSERT_TRUE(edge);
  EXPECT_EQ(edge->affinity.last_seen, at(9223372036));

  for (const char* until : {"9223372037", "-99999999999999999999", "soon", "12x"}) {
    const auto block = parse_twin_record("b:192.0.2.7", std::string("1 ") + until + " lb1", -1);
    ASSERT_TRUE(block) << until;
    EXPECT_EQ(block->until, SystemTime{}) << until;
  }
  const auto past = parse_twin_record("b:192.0.2.7", "1 -5 lb1", -1);
  ASSERT_TRUE(past);
  EXPECT_EQ(past->until, at(-5));
}

TEST(TwinRecord, NegativeTtlIsNoTtl) {
  // Verifies that Redis's -1 (no expiry) and -2 (gone) give an affinity ttl of 0, not a
  // negative one.
  for (const std::int64_t ttl :
       {std::int64_t{-1}, std::int64_t{-2}, std::numeric_limits<std::int64_t>::min()}) {
    const auto entry = parse_twin_record("a:web:01", "1 alpha 1796000000 lb1", ttl);
    ASSERT_TRUE(entry) << ttl;
    EXPECT_EQ(entry->affinity.ttl, 0s) << ttl;
  }
}

TEST(TwinRecord, EmptyMissingOrExtraFieldsAreRefused) {
  // Verifies that an empty key or value, a key without its kind, another version, or a value
  // with a word too few or too many gives no message; runs of white space between words are
  // one separator.
  EXPECT_FALSE(parse_twin_record("", "1 draining lb1", -1));
  EXPECT_FALSE(parse_twin_record("n", "1 draining lb1", -1));
  EXPECT_FALSE(parse_twin_record("n:web:alpha", "", -1));
  EXPECT_FALSE(parse_twin_record("n:web:alpha", "1", -1));
  EXPECT_FALSE(parse_twin_record("n:web:alpha", "2 draining lb1", -1));
  EXPECT_FALSE(parse_twin_record("n:web:alpha", "1 lb1", -1));
  EXPECT_FALSE(parse_twin_record("n:web:alpha", "1 draining lb1 extra", -1));
  EXPECT_FALSE(parse_twin_record("n:webalpha", "1 draining lb1", -1));
  EXPECT_FALSE(parse_twin_record("r:web", "1 lb1", -1));
  EXPECT_FALSE(parse_twin_record("b:192.0.2.7", "1 0", -1));
  EXPECT_FALSE(parse_twin_record("x:web", "1 a lb1", -1));
  EXPECT_FALSE(parse_twin_record("epoch", "0123456789abcdef", -1));
  const auto spaced = parse_twin_record("n:web:alpha", " 1 \t draining\r\nlb1 ", -1);
  ASSERT_TRUE(spaced);
  EXPECT_EQ(spaced->state, "draining");
  EXPECT_EQ(spaced->instance, "lb1");
}

TEST(TwinMessage, EachKindParsesWithItsFields) {
  // Verifies that a message of each kind gives the sender and the fields its text says, with a
  // binary client key from the hex, a route without target as a reset and a block's end.
  const auto affinity = parse_twin_message("1 lb1 a web 00ff7f alpha 1796000000 3600");
  ASSERT_TRUE(affinity);
  EXPECT_EQ(affinity->kind, Kind::affinity);
  EXPECT_EQ(affinity->instance, "lb1");
  EXPECT_EQ(affinity->affinity,
            (AffinityEntry{"web", std::string("\x00\xff\x7f", 3), "alpha", at(1796000000), 3600s}));
  const auto pin = parse_twin_message("1 lb1 p web 01 beta 1796000000 60");
  ASSERT_TRUE(pin);
  EXPECT_EQ(pin->kind, Kind::pin);
  EXPECT_EQ(pin->affinity.node, "beta");
  const auto forget = parse_twin_message("1 lb2 f web 01");
  ASSERT_TRUE(forget);
  EXPECT_EQ(forget->kind, Kind::forget);
  EXPECT_EQ(forget->affinity.cluster + "/" + forget->affinity.key, "web/\x01");
  const auto state = parse_twin_message("1 lb2 n web alpha draining");
  ASSERT_TRUE(state);
  EXPECT_EQ(state->kind, Kind::node_state);
  EXPECT_EQ(state->cluster + "/" + state->node + "=" + state->state, "web/alpha=draining");
  const auto route = parse_twin_message("1 lb2 r api spare");
  ASSERT_TRUE(route);
  EXPECT_EQ(route->kind, Kind::route);
  EXPECT_EQ(route->name + "->" + route->target, "api->spare");
  const auto reset = parse_twin_message("1 lb2 r api");
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->target, "");
  const auto block = parse_twin_message("1 lb2 b 192.0.2.0/24@web 1796000000");
  ASSERT_TRUE(block);
  EXPECT_EQ(block->kind, Kind::block);
  EXPECT_EQ(block->name, "192.0.2.0/24@web");
  EXPECT_EQ(block->until, at(1796000000));
  const auto unblock = parse_twin_message("1 lb2 u 192.0.2.0/24@web");
  ASSERT_TRUE(unblock);
  EXPECT_EQ(unblock->kind, Kind::unblock);
  EXPECT_EQ(unblock->name, "192.0.2.0/24@web");
}

TEST(TwinMessage, WrittenMessagesParseBackToTheSameMessage) {
  // Verifies that the text the link publishes for each kind parses back to the message.
  TwinMessage m;
  m.instance = "lb1";
  m.affinity = {"web", std::string("\x00 \n\xff", 4), "alpha", at(1796000123), 90s};
  for (const Kind kind : {Kind::affinity, Kind::pin}) {
    m.kind = kind;
    EXPECT_EQ(parse_twin_message(twin_message_text(m)), m) << twin_message_text(m);
  }
  EXPECT_EQ(twin_message_text(m), "1 lb1 p web 00200aff alpha 1796000123 90");
  TwinMessage forget;
  forget.kind = Kind::forget;
  forget.instance = "lb1";
  forget.affinity.cluster = "web";
  forget.affinity.key = "k";
  EXPECT_EQ(parse_twin_message(twin_message_text(forget)), forget);
  TwinMessage state;
  state.kind = Kind::node_state;
  state.instance = "lb1";
  state.cluster = "web";
  state.node = "alpha";
  state.state = "offline";
  EXPECT_EQ(parse_twin_message(twin_message_text(state)), state);
  TwinMessage route;
  route.kind = Kind::route;
  route.instance = "lb1";
  route.name = "api";
  route.target = "spare";
  EXPECT_EQ(parse_twin_message(twin_message_text(route)), route);
  route.target.clear();
  EXPECT_EQ(twin_message_text(route), "1 lb1 r api");
  EXPECT_EQ(parse_twin_message(twin_message_text(route)), route);
  TwinMessage block;
  block.kind = Kind::block;
  block.instance = "lb1";
  block.name = "2001:db8::/32";
  EXPECT_EQ(twin_message_text(block), "1 lb1 b 2001:db8::/32 0");
  EXPECT_EQ(parse_twin_message(twin_message_text(block)), block);
  block.kind = Kind::unblock;
  block.until = {};
  EXPECT_EQ(parse_twin_message(twin_message_text(block)), block);
}

TEST(TwinMessage, MalformedTextIsRefused) {
  // Verifies that another version, an unknown kind, a field too few or too many, a client key
  // that is not lower-case hex and an affinity time or TTL that is not a number give no message;
  // a block's end that is not a time counts as no end, as in a record.
  EXPECT_FALSE(parse_twin_message(""));
  EXPECT_FALSE(parse_twin_message("1 lb1"));
  EXPECT_FALSE(parse_twin_message("2 lb1 u 192.0.2.7"));
  EXPECT_FALSE(parse_twin_message("1 lb1 x 192.0.2.7"));
  EXPECT_FALSE(parse_twin_message("1 lb1 u"));
  EXPECT_FALSE(parse_twin_message("1 lb1 u 192.0.2.7 extra"));
  EXPECT_FALSE(parse_twin_message("1 lb1 n web alpha"));
  EXPECT_FALSE(parse_twin_message("1 lb1 r"));
  EXPECT_FALSE(parse_twin_message("1 lb1 r api spare extra"));
  EXPECT_FALSE(parse_twin_message("1 lb1 f web 0F"));
  EXPECT_FALSE(parse_twin_message("1 lb1 f web 123"));
  EXPECT_FALSE(parse_twin_message("1 lb1 a web 01 alpha soon 60"));
  EXPECT_FALSE(parse_twin_message("1 lb1 a web 01 alpha 9223372037 60"));
  EXPECT_FALSE(parse_twin_message("1 lb1 a web 01 alpha 1796000000 1h"));
  EXPECT_FALSE(parse_twin_message("1 lb1 a web 01 alpha 1796000000 99999999999999999999"));
  EXPECT_FALSE(parse_twin_message("1 lb1 p web 01 alpha 1796000000"));
  const auto block = parse_twin_message("1 lb1 b 192.0.2.7 later");
  ASSERT_TRUE(block);
  EXPECT_EQ(block->until, SystemTime{});
}

}  // namespace
}  // namespace pb::state
