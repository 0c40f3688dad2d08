// Unit tests of `pbadmin top`'s data: status documents -> rows and rates (top_view.hpp).
#include "protobalance/pbadmin/top_view.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <string>

namespace pb::pbadmin {
namespace {

using namespace std::chrono_literals;

TopSample sample(const std::string& json, std::chrono::steady_clock::time_point taken) {
  return TopSample{boost::json::parse(json).as_object(), taken};
}

std::string status_json(int web_connections, int alpha_total, int alpha_bytes, int beta_total,
                        const std::string& beta_state = "available", bool beta_up = true) {
  return R"({"listeners":[{"name":"web","address":"127.0.0.1:8080","cluster":"web","active":3,
                           "connections":)" +
         std::to_string(web_connections) + R"(}],
            "clusters":[{"name":"web","algorithm":"round_robin","nodes":[
              {"name":"alpha","address":"127.0.0.1:9001","state":"available","up":true,
               "active":2,"total":)" +
         std::to_string(alpha_total) + R"(,"failures":1,"tier":1,"bytes_to_node":)" +
         std::to_string(alpha_bytes) + R"(,"bytes_to_client":)" + std::to_string(alpha_bytes) +
         R"(},
              {"name":"beta","address":"127.0.0.1:9002","state":")" +
         beta_state + R"(","up":)" + (beta_up ? "true" : "false") + R"(,
               "active":1,"total":)" +
         std::to_string(beta_total) + R"(,"failures":0,"tier":2}]}],
            "affinity_entries":7})";
}

TEST(TopView, FirstSampleHasRowsWithoutRates) {
  // Verifies that a lone sample gives every listener and node with its counters and no rates.
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  const TopFrame frame = make_top_frame(sample(status_json(10, 5, 100, 3), t0), nullptr);
  ASSERT_EQ(frame.listeners.size(), 1U);
  EXPECT_EQ(frame.listeners[0].name, "web");
  EXPECT_EQ(frame.listeners[0].active, 3);
  EXPECT_FALSE(frame.listeners[0].connections_per_s);
  ASSERT_EQ(frame.nodes.size(), 2U);
  EXPECT_EQ(frame.nodes[0].name, "alpha");
  EXPECT_EQ(frame.nodes[0].cluster, "web");
  EXPECT_EQ(frame.nodes[0].active, 2);
  EXPECT_EQ(frame.nodes[0].failures, 1U);
  EXPECT_EQ(frame.nodes[1].tier, 2U);
  EXPECT_FALSE(frame.nodes[0].connections_per_s);
  EXPECT_FALSE(frame.nodes[0].bytes_per_s);
  EXPECT_EQ(frame.affinity_entries, 7U);
  EXPECT_EQ(frame.seconds, 0);
}

TEST(TopView, RatesBetweenTwoSamples) {
  // Verifies connections/s and bytes/s as counter growth over the time between samples.
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  const TopSample before = sample(status_json(10, 5, 100, 3), t0);
  const TopSample after = sample(status_json(30, 25, 1100, 3), t0 + 2s);
  const TopFrame frame = make_top_frame(after, &before);
  EXPECT_DOUBLE_EQ(frame.seconds, 2.0);
  ASSERT_TRUE(frame.listeners[0].connections_per_s);
  EXPECT_DOUBLE_EQ(*frame.listeners[0].connections_per_s, 10.0);
  ASSERT_TRUE(frame.nodes[0].connections_per_s);
  EXPECT_DOUBLE_EQ(*frame.nodes[0].connections_per_s, 10.0);
  ASSERT_TRUE(frame.nodes[0].bytes_per_s);
  EXPECT_DOUBLE_EQ(*frame.nodes[0].bytes_per_s, 1000.0);  // (1000 + 1000) bytes / 2 s
  EXPECT_DOUBLE_EQ(*frame.nodes[1].connections_per_s, 0.0);
  EXPECT_DOUBLE_EQ(*frame.nodes[1].bytes_per_s, 0.0);  // no byte fields: 0 both times
}

TEST(TopView, NoRateWhenCountersGoBackOrNoTimePassed) {
  // Verifies that a restarted daemon (smaller counters) or equal timestamps give no rate, and a
  // node absent before has none either.
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  const TopSample before = sample(status_json(10, 50, 100, 3), t0);
  const TopFrame restarted = make_top_frame(sample(status_json(1, 2, 10, 3), t0 + 1s), &before);
  EXPECT_FALSE(restarted.listeners[0].connections_per_s);
  EXPECT_FALSE(restarted.nodes[0].connections_per_s);
  EXPECT_FALSE(restarted.nodes[0].bytes_per_s);
  ASSERT_TRUE(restarted.nodes[1].connections_per_s);

  const TopFrame same_time = make_top_frame(sample(status_json(20, 60, 200, 3), t0), &before);
  EXPECT_FALSE(same_time.nodes[0].connections_per_s);

  const TopSample empty = sample(R"({"listeners":[],"clusters":[]})", t0);
  const TopFrame fresh = make_top_frame(sample(status_json(20, 60, 200, 3), t0 + 1s), &empty);
  EXPECT_FALSE(fresh.nodes[0].connections_per_s);
  EXPECT_FALSE(fresh.listeners[0].connections_per_s);
}

TEST(TopView, HealthFollowsStateAndUp) {
  // Verifies the colour class: available+up good, draining warning, offline or down bad.
  const auto t0 = std::chrono::steady_clock::time_point{};
  EXPECT_EQ(make_top_frame(sample(status_json(0, 0, 0, 0), t0), nullptr).nodes[1].health,
            TopHealth::good);
  EXPECT_EQ(make_top_frame(sample(status_json(0, 0, 0, 0, "draining"), t0), nullptr).nodes[1].health,
            TopHealth::warning);
  EXPECT_EQ(make_top_frame(sample(status_json(0, 0, 0, 0, "offline"), t0), nullptr).nodes[1].health,
            TopHealth::bad);
  const TopFrame down = make_top_frame(sample(status_json(0, 0, 0, 0, "available", false), t0), nullptr);
  EXPECT_EQ(down.nodes[1].health, TopHealth::bad);
  EXPECT_FALSE(down.nodes[1].up);
}

TEST(TopView, MalformedDocumentsGiveWhatCanBeRead) {
  // Verifies that wrong types and missing fields neither throw nor invent rows.
  const auto t0 = std::chrono::steady_clock::time_point{};
  const TopFrame frame = make_top_frame(
      sample(R"({"listeners":[1,{"name":5}],"clusters":{"x":1},"affinity_entries":"x"})", t0),
      nullptr);
  ASSERT_EQ(frame.listeners.size(), 1U);
  EXPECT_EQ(frame.listeners[0].name, "");
  EXPECT_TRUE(frame.nodes.empty());
  EXPECT_EQ(frame.affinity_entries, 0U);
  const TopFrame nodes = make_top_frame(
      sample(R"({"clusters":[{"name":"c","nodes":[{"name":"n","active":-2,"failures":-1,"tier":1e30}]}]})",
             t0),
      nullptr);
  ASSERT_EQ(nodes.nodes.size(), 1U);
  EXPECT_EQ(nodes.nodes[0].active, -2);
  EXPECT_EQ(nodes.nodes[0].failures, 0U);
  EXPECT_EQ(nodes.nodes[0].tier, 0U);
}

TEST(TopView, FormatsRates) {
  // Verifies the short spellings of rates.
  EXPECT_EQ(format_rate(std::nullopt), "-");
  EXPECT_EQ(format_rate(0.0), "0");
  EXPECT_EQ(format_rate(3.46), "3.5");
  EXPECT_EQ(format_rate(250.4), "250");
  EXPECT_EQ(format_byte_rate(std::nullopt), "-");
  EXPECT_EQ(format_byte_rate(812.0), "812");
  EXPECT_EQ(format_byte_rate(1536.0), "1.5K");
  EXPECT_EQ(format_byte_rate(23.0 * 1024 * 1024), "23.0M");
  EXPECT_EQ(format_byte_rate(1.25 * 1024 * 1024 * 1024), "1.2G");
}

TEST(TopView, PlainTextLines) {
  // Verifies the plain view line by line: summary, aligned tables, numbers right-aligned.
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  const TopSample before = sample(status_json(10, 5, 100, 3), t0);
  const TopFrame frame =
      make_top_frame(sample(status_json(30, 25, 1100, 3, "draining"), t0 + 2s), &before);
  EXPECT_EQ(format_top_plain(frame),
            "pbadmin top: 1 listener, 2 nodes (2 up), 7 affinity entries\n"
            "\n"
            "LISTENER  ADDRESS         CLUSTER  ACTIVE  CONN/S\n"
            "web       127.0.0.1:8080  web           3    10.0\n"
            "\n"
            "CLUSTER  NODE   ADDRESS         STATE      UP  TIER  ACTIVE  CONN/S  BYTES/S  FAILURES\n"
            "web      alpha  127.0.0.1:9001  available  up     1       2    10.0     1000         1\n"
            "web      beta   127.0.0.1:9002  draining   up     2       1       0        0         0\n");
}

}  // namespace
}  // namespace pb::pbadmin
