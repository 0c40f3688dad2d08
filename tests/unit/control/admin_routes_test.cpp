// The admin API's route table: matching with {name} segments, 404 naming the resources, 405
// with Allow, and 400 for a target that cannot be parsed.
#include <gtest/gtest.h>

#include <string>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include "protobalance/control/admin_routes.hpp"

namespace pb::control {
namespace {

std::string error_of(const AdminResponse& response) {
  const auto* object = response.body.if_object();
  if (object == nullptr || !object->contains("error")) return "<no error member>";
  return std::string(object->at("error").as_string());
}

// A table whose handlers answer with what they matched: "METHOD path a=1 b=2 |body".
AdminRouteTable echo_table() {
  AdminRouteTable table;
  const auto echo = [](const AdminRequest& request) {
    std::string text = std::string(request.method) + " " + request.target.path;
    for (const auto& [name, value] : request.params) text += " " + name + "=" + value;
    text += " |" + std::string(request.body);
    return AdminResponse{200, boost::json::object{{"echo", text}}, {}};
  };
  table.add("GET", "/v1/status", echo);
  table.add("PUT", "/v1/clusters/{cluster}/nodes/{node}/state", echo);
  table.add("PUT", "/v1/listeners/{listener}/route", echo);
  table.add("DELETE", "/v1/listeners/{listener}/route", echo);
  return table;
}

std::string echo_of(const AdminResponse& response) {
  return std::string(response.body.as_object().at("echo").as_string());
}

TEST(AdminRoutes, MatchesLiteralAndNamedSegments) {
  // Verifies that the handler of the matching route runs with the decoded {name} values and
  // the body, and that doubled and trailing slashes name the same resource.
  const AdminRouteTable table = echo_table();
  const AdminResponse status = table.dispatch("GET", "/v1/status", "");
  EXPECT_EQ(status.status, 200U);
  EXPECT_EQ(echo_of(status), "GET /v1/status |");

  const AdminResponse state =
      table.dispatch("PUT", "/v1/clusters/we%62/nodes/a%20b/state/", "{}");
  ASSERT_EQ(state.status, 200U) << error_of(state);
  EXPECT_EQ(echo_of(state), "PUT /v1/clusters/we%62/nodes/a%20b/state/ cluster=web node=a b |{}");

  const AdminResponse route = table.dispatch("DELETE", "//v1/listeners/front/route", "");
  ASSERT_EQ(route.status, 200U) << error_of(route);
  EXPECT_EQ(echo_of(route), "DELETE //v1/listeners/front/route listener=front |");
}

TEST(AdminRoutes, UnknownPathIs404NamingEveryResource) {
  // Verifies the 404 for a path no pattern matches (also one segment too many or too few),
  // listing each resource once with its {names} in capitals.
  const AdminRouteTable table = echo_table();
  for (const char* path : {"/v1/nothing", "/v1/status/more", "/v1/listeners/front", "/"}) {
    const AdminResponse response = table.dispatch("GET", path, "");
    EXPECT_EQ(response.status, 404U) << path;
    EXPECT_TRUE(response.allow.empty());
    EXPECT_EQ(error_of(response),
              std::string("no resource ") + path +
                  "; resources: /v1/status, /v1/clusters/CLUSTER/nodes/NODE/state, "
                  "/v1/listeners/LISTENER/route")
        << path;
  }
}

TEST(AdminRoutes, WrongMethodIs405WithAllow) {
  // Verifies that a known path with another method answers 405 with the path's methods in
  // Allow, in the order they were added, and runs no handler.
  const AdminRouteTable table = echo_table();
  const AdminResponse route = table.dispatch("GET", "/v1/listeners/front/route", "");
  EXPECT_EQ(route.status, 405U);
  EXPECT_EQ(route.allow, "PUT, DELETE");
  EXPECT_EQ(error_of(route),
            "GET is not allowed on /v1/listeners/front/route; allowed: PUT, DELETE");

  const AdminResponse status = table.dispatch("POST", "/v1/status", "{}");
  EXPECT_EQ(status.status, 405U);
  EXPECT_EQ(status.allow, "GET");
}

TEST(AdminRoutes, MalformedTargetIs400) {
  // Verifies that a target without a leading slash or with a broken escape is refused before
  // any matching.
  const AdminRouteTable table = echo_table();
  for (const char* target : {"v1/status", "/v1/%zz", "/v1/status?x=%4", ""}) {
    const AdminResponse response = table.dispatch("GET", target, "");
    EXPECT_EQ(response.status, 400U) << target;
    EXPECT_EQ(error_of(response), std::string("malformed request target '") + target + "'");
  }
}

TEST(AdminRequest, ParsesTargetQueryAndBodyFields) {
  // Verifies query decoding ('+' and %XX, empty pairs skipped) and the body field rules:
  // required, optional, unknown and non-string members.
  const auto target = parse_target("/v1/affinity?client=2001%3adb8%3a%3a1&&cluster=a+b&flag");
  ASSERT_TRUE(target);
  ASSERT_EQ(target->query.size(), 3U);
  EXPECT_EQ(target->query[0], (std::pair<std::string, std::string>{"client", "2001:db8::1"}));
  EXPECT_EQ(target->query[1], (std::pair<std::string, std::string>{"cluster", "a b"}));
  EXPECT_EQ(target->query[2], (std::pair<std::string, std::string>{"flag", ""}));

  const auto ok = parse_fields(R"({"state": "red"})", {"state"}, {"why"});
  ASSERT_TRUE(std::holds_alternative<Fields>(ok));
  EXPECT_EQ(std::get<Fields>(ok).values.at("state"), "red");

  const auto missing = parse_fields("{}", {"state"}, {});
  ASSERT_TRUE(std::holds_alternative<AdminResponse>(missing));
  EXPECT_EQ(error_of(std::get<AdminResponse>(missing)),
            "missing field \"state\"; expected \"state\"");
  const auto unknown = parse_fields(R"({"state": "red", "x": "1"})", {"state"}, {"why"});
  ASSERT_TRUE(std::holds_alternative<AdminResponse>(unknown));
  EXPECT_EQ(error_of(std::get<AdminResponse>(unknown)),
            "unknown field \"x\"; expected \"state\", \"why\"");
  const auto number = parse_fields(R"({"state": 2})", {"state"}, {});
  ASSERT_TRUE(std::holds_alternative<AdminResponse>(number));
  EXPECT_EQ(std::get<AdminResponse>(number).status, 400U);
  const auto not_json = parse_fields("state=red", {"state"}, {});
  ASSERT_TRUE(std::holds_alternative<AdminResponse>(not_json));
  EXPECT_EQ(std::get<AdminResponse>(not_json).status, 400U);
}

}  // namespace
}  // namespace pb::control
