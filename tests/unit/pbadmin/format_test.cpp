#include "protobalance/pbadmin/format.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace pb::pbadmin {
namespace {

// A status document as GET /v1/status answers it, cut to one cluster of two checked nodes: "a"
// is down by its checks after a reply that did not match, "b" passes them.
constexpr const char* kStatus = R"({
  "listeners": [{"name": "web", "address": "127.0.0.1:8080", "cluster": "pool",
                 "configured_cluster": "pool", "routed": false, "active": 0, "connections": 3,
                 "sni_routes": []}],
  "clusters": [{"name": "pool", "algorithm": "round_robin", "affinity": false, "nodes": [
    {"name": "a", "address": "127.0.0.1:9001", "state": "available", "up": true, "since": null,
     "active": 0, "total": 1, "failures": 0, "failovers": 0, "load_factor": 1,
     "max_connections": 0, "tier": 0, "fallover": null,
     "check": {"down": true, "last_result": "mismatch", "last_change": "2026-12-06T20:00:00Z",
               "passed_in_row": 0, "failed_in_row": 3,
               "last_failure": {"reason": "mismatch", "detail": "got \"ERR busy\"",
                                "at": "2026-12-06T20:00:00Z"}},
     "agent": null},
    {"name": "b", "address": "127.0.0.1:9002", "state": "available", "up": true, "since": null,
     "active": 0, "total": 2, "failures": 0, "failovers": 0, "load_factor": 1,
     "max_connections": 0, "tier": 0, "fallover": null,
     "check": {"down": false, "last_result": "passed", "last_change": null,
               "passed_in_row": 5, "failed_in_row": 0, "last_failure": null},
     "agent": null}]}]
})";

TEST(Format, StatusSaysWhyAFailingCheckTookANodeOut) {
  // Verifies the UP column of a node down by its checks: the result, since when, and what the
  // last failed check saw (for a mismatch, the reply); a node passing its checks shows "up".
  const std::string text = format_status(boost::json::parse(kStatus).as_object());
  EXPECT_NE(text.find("check mismatch since 2026-12-06T20:00:00Z (got \"ERR busy\")"),
            std::string::npos)
      << text;
  const std::size_t b = text.find("\n  b ");
  ASSERT_NE(b, std::string::npos) << text;
  const std::string line_b = text.substr(b + 1, text.find('\n', b + 1) - b - 1);
  EXPECT_NE(line_b.find(" up "), std::string::npos) << line_b;
  EXPECT_EQ(line_b.find("check"), std::string::npos) << line_b;
}

TEST(Format, BlocksTableAndJson) {
  // Verifies `blocks`: the table marks every listener with * and no end with -, aligned under
  // its header; the JSON has null for every listener and for no end, times in ISO 8601 UTC.
  const std::vector<state::BlockRow> rows{
      state::BlockRow{"192.0.2.0/24", "", 1'800'000'000, 0},
      state::BlockRow{"2001:db8::1", "web", 1'800'000'000, 1'800'003'600}};
  EXPECT_EQ(format_blocks_table(rows),
            "NETWORK       LISTENER  CREATED               EXPIRES\n"
            "192.0.2.0/24  *         2027-01-15T08:00:00Z  -\n"
            "2001:db8::1   web       2027-01-15T08:00:00Z  2027-01-15T09:00:00Z\n");
  EXPECT_EQ(format_blocks_table({}), "NETWORK  LISTENER  CREATED  EXPIRES\n");
  EXPECT_EQ(format_blocks_json(rows),
            R"([{"network":"192.0.2.0/24","listener":null,"created":"2027-01-15T08:00:00Z",)"
            R"("expires":null},{"network":"2001:db8::1","listener":"web",)"
            R"("created":"2027-01-15T08:00:00Z","expires":"2027-01-15T09:00:00Z"}])"
            "\n");
  EXPECT_EQ(format_blocks_json({}), "[]\n");
}

}  // namespace
}  // namespace pb::pbadmin
