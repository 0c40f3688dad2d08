// The status snapshot (take_status) on a real Runtime that is never started: the plain values
// it reads from the configuration, the routes and the nodes' counters, and the status document
// built from it.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <boost/json/object.hpp>

#include "protobalance/control/runtime.hpp"
#include "protobalance/control/status.hpp"
#include "protobalance/control/status_document.hpp"
#include "support/backend.hpp"
#include "support/process.hpp"

namespace pb::control {
namespace {

using namespace std::chrono_literals;

constexpr const char* kConfig = R"([service]
threads = 1

[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"

[[cluster]]
name = "web"
algorithm = "least_connections"
slow_start = "60s"
[cluster.health]
interval = "2s"

[[cluster.node]]
name = "alpha"
address = "127.0.0.1:9001"
fallover = "beta"

[[cluster.node]]
name = "beta"
address = "127.0.0.1:9002"
load_factor = 2

[[cluster]]
name = "spare"
[[cluster.node]]
name = "solo"
address = "127.0.0.1:9003"
)";

class TakeStatus : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = load_config(dir_.write("pb.toml", kConfig));
    ASSERT_TRUE(loaded.config) << (loaded.errors.empty() ? "" : loaded.errors[0].to_string());
    runtime_ = std::make_unique<Runtime>(loaded.config, RuntimeOptions{1});
  }

  balance::NodeRuntime& node(const std::string& cluster, const std::string& name) {
    const auto snapshot = runtime_->snapshot();
    const auto& c = *snapshot->clusters.at(cluster);
    return *c.nodes()[static_cast<std::size_t>(c.find(name))].runtime;
  }

  test::TempDir dir_;
  std::unique_ptr<Runtime> runtime_;
};

TEST_F(TakeStatus, ListsListenersClustersAndNodesInConfigurationOrder) {
  // Verifies the shape: every listener and cluster of the file in its order, each node with its
  // configured values.
  const Status status = take_status(*runtime_);
  ASSERT_EQ(status.listeners.size(), 1U);
  EXPECT_EQ(status.listeners[0].name, "web");
  EXPECT_EQ(status.listeners[0].cluster, "web");
  EXPECT_EQ(status.listeners[0].configured_cluster, "web");
  EXPECT_FALSE(status.listeners[0].routed());
  EXPECT_EQ(status.listeners[0].address, "127.0.0.1:0");  // not bound: as configured
  ASSERT_EQ(status.clusters.size(), 2U);
  EXPECT_EQ(status.clusters[0].name, "web");
  EXPECT_EQ(status.clusters[0].algorithm, "least_connections");
  EXPECT_EQ(status.clusters[1].name, "spare");
  ASSERT_EQ(status.clusters[0].nodes.size(), 2U);
  const NodeStatus& alpha = status.clusters[0].nodes[0];
  EXPECT_EQ(alpha.name, "alpha");
  EXPECT_EQ(alpha.address, "127.0.0.1:9001");
  EXPECT_EQ(alpha.fallover, std::optional<std::string>("beta"));
  EXPECT_EQ(status.clusters[0].nodes[1].load_factor, 2.0);
  EXPECT_FALSE(status.clusters[0].nodes[1].fallover);
  ASSERT_TRUE(alpha.check);  // [cluster.health] is set
  EXPECT_FALSE(alpha.check->last_result);  // never checked yet
  EXPECT_FALSE(alpha.agent);
  EXPECT_FALSE(status.clusters[1].nodes[0].check);
}

TEST_F(TakeStatus, ReadsTheNodesCountersAndStates) {
  // Verifies that counters, availability, check results and the slow-start ramp come from the
  // node's run-time state, times converted to wall-clock time.
  auto& alpha = node("web", "alpha");
  alpha.active = 3;
  alpha.total = 40;
  alpha.failures[static_cast<std::size_t>(balance::FailureReason::refused)] = 2;
  alpha.failures[static_cast<std::size_t>(balance::FailureReason::timeout)] = 1;
  alpha.admin_state = config::AdminState::draining;
  const auto steady_now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::steady_clock::now().time_since_epoch())
                              .count();
  alpha.unavailable_since_ns = steady_now - std::chrono::nanoseconds(10s).count();
  alpha.eligible_since_ns = steady_now - std::chrono::nanoseconds(15s).count();
  runtime_->snapshot()->clusters.at("web")->on_check(0, balance::CheckResult::mismatch,
                                                    "got \"nope\"");

  const Status status = take_status(*runtime_);
  const NodeStatus& a = status.clusters[0].nodes[0];
  EXPECT_EQ(a.active, 3);
  EXPECT_EQ(a.total, 40U);
  EXPECT_EQ(a.failures_total(), 3U);
  EXPECT_EQ(a.state, config::AdminState::draining);
  EXPECT_FALSE(a.reachable);
  EXPECT_FALSE(a.serving());
  ASSERT_TRUE(a.unavailable_since);
  const auto age = std::chrono::system_clock::now() - *a.unavailable_since;
  EXPECT_GE(age, 9s);
  EXPECT_LE(age, 60s);
  ASSERT_TRUE(a.slow_start_remaining);  // 60 s ramp, 15 s in
  EXPECT_GT(*a.slow_start_remaining, 40s);
  EXPECT_LE(*a.slow_start_remaining, 45s);
  ASSERT_TRUE(a.check);
  EXPECT_EQ(a.check->last_result, balance::CheckResult::mismatch);
  EXPECT_EQ(a.check->last_failure, balance::CheckResult::mismatch);
  EXPECT_EQ(a.check->last_failure_detail, "got \"nope\"");
  EXPECT_EQ(a.check->failed_in_row, 1U);
  EXPECT_EQ(a.check_failures[static_cast<std::size_t>(balance::CheckResult::mismatch)], 1U);

  const NodeStatus& beta = status.clusters[0].nodes[1];
  EXPECT_TRUE(beta.reachable);
  EXPECT_FALSE(beta.unavailable_since);
  EXPECT_FALSE(beta.slow_start_remaining);

  // The document shows the same values.
  const boost::json::object document = status_document(status);
  const auto& doc_alpha =
      document.at("clusters").as_array()[0].as_object().at("nodes").as_array()[0].as_object();
  EXPECT_EQ(doc_alpha.at("state"), "draining");
  EXPECT_EQ(doc_alpha.at("up"), false);
  EXPECT_TRUE(doc_alpha.at("since").is_string());
  EXPECT_EQ(doc_alpha.at("failures"), 3U);
  const auto& failure = doc_alpha.at("check").as_object().at("last_failure").as_object();
  EXPECT_EQ(failure.at("reason"), "mismatch");
  EXPECT_EQ(failure.at("detail"), "got \"nope\"");
}

}  // namespace
}  // namespace pb::control

namespace pb::control {
namespace {

TEST(TwinStatus, AbsentWithoutTwinAndShowsAnUnreachableRedisWithIt) {
  // Verifies that the status has no twin part without [twin], and with [twin] pointing at a
  // port where nothing listens: this instance, not connected, why, and a "twin" object in the
  // status document.
  test::TempDir dir;
  auto plain = load_config(dir.write("plain.toml", kConfig));
  ASSERT_TRUE(plain.config);
  {
    Runtime runtime(plain.config, RuntimeOptions{1});
    const Status status = take_status(runtime);
    EXPECT_FALSE(status.twin.has_value());
    EXPECT_TRUE(status_document(status).at("twin").is_null());
  }
  const std::string closed = test::closed_port_address();
  auto twin = load_config(dir.write("twin.toml", std::string(kConfig) + "[twin]\nredis = \"" +
                                                     closed + "\"\ninstance = \"lb7\"\n"));
  ASSERT_TRUE(twin.config) << (twin.errors.empty() ? "" : twin.errors[0].to_string());
  Runtime runtime(twin.config, RuntimeOptions{1});
  Status status = take_status(runtime);
  ASSERT_TRUE(status.twin.has_value());
  EXPECT_EQ(status.twin->instance, "lb7");
  EXPECT_EQ(status.twin->redis, closed);
  EXPECT_FALSE(status.twin->connected);
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (status.twin->last_error.empty() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);  // polling the link's first attempt, bounded
    status = take_status(runtime);
  }
  EXPECT_NE(status.twin->last_error.find("cannot connect to Redis at " + closed), std::string::npos)
      << status.twin->last_error;
  const auto document = status_document(status);
  const auto& t = document.at("twin").as_object();
  EXPECT_EQ(t.at("instance").as_string(), "lb7");
  EXPECT_FALSE(t.at("connected").as_bool());
  EXPECT_EQ(t.at("lookups").as_object().at("hit").to_number<std::int64_t>(), 0);
}

}  // namespace
}  // namespace pb::control
