#include "protobalance/balance/health_check.hpp"

#include <chrono>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <gtest/gtest.h>

#include "support/backend.hpp"

namespace pb::balance {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

asio::ip::tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  return {asio::ip::make_address(address.substr(0, colon)),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

// Runs one check to completion on a private io_context; the context's run is bounded by the
// check's own timeout, plus a guard of 10 s so that a broken check cannot hang the test.
CheckOutcome check(CheckTarget target) {
  asio::io_context context;
  std::optional<CheckOutcome> outcome;
  asio::co_spawn(context, run_check(std::move(target)),
                 [&](std::exception_ptr error, CheckOutcome result) {
                   if (!error) outcome = std::move(result);
                 });
  context.run_for(10s);
  EXPECT_TRUE(outcome.has_value()) << "the check did not complete";
  return outcome.value_or(CheckOutcome{CheckResult::ok, "did not complete"});
}

CheckTarget target(const std::string& address, std::string send = "", std::string expect = "") {
  CheckTarget t;
  t.endpoint = endpoint_of(address);
  t.timeout = 500ms;
  t.send = std::move(send);
  t.expect = std::move(expect);
  return t;
}

TEST(HealthCheck, ConnectOnlyPassesOnAListeningNode) {
  // Verifies a check without send/expect passes when the connect completes.
  test::Backend node("a", test::BackendMode::hold);
  EXPECT_EQ(check(target(node.address())).result, CheckResult::ok);
}

TEST(HealthCheck, ExpectedReplyPassesAndAnotherIsAMismatch) {
  // Verifies send/expect against an echo node: the echoed text passes, a different expectation
  // fails as mismatch with what came back in the detail; the preamble goes first.
  test::Backend node("a", test::BackendMode::echo);
  EXPECT_EQ(check(target(node.address(), "PING\r\n", "PING")).result, CheckResult::ok);
  auto with_preamble = target(node.address(), "PING\r\n", "HDR PING");
  with_preamble.preamble = "HDR ";
  EXPECT_EQ(check(with_preamble).result, CheckResult::ok);
  const CheckOutcome wrong = check(target(node.address(), "PING\r\n", "+PONG"));
  EXPECT_EQ(wrong.result, CheckResult::mismatch);
  EXPECT_NE(wrong.detail.find("PING\\x0d\\x0a"), std::string::npos) << wrong.detail;
}

TEST(HealthCheck, RefusedClosedAndTimeoutAreTold) {
  // Verifies the failure reasons: nothing listening (refused), a node closing at once without a
  // byte (closed, or reset when the kernel says so), a connect that hangs (timeout).
  EXPECT_EQ(check(target(test::closed_port_address())).result, CheckResult::refused);
  test::Backend closer("c", test::BackendMode::close_at_once);
  const CheckResult closed = check(target(closer.address(), "PING\r\n", "PONG")).result;
  EXPECT_TRUE(closed == CheckResult::closed || closed == CheckResult::reset) << to_string(closed);
  test::BlackHole hole;
  EXPECT_EQ(check(target(hole.address())).result, CheckResult::timeout);
  // A node that accepts but never answers: timeout, not mismatch.
  test::Backend silent("s", test::BackendMode::hold);
  EXPECT_EQ(check(target(silent.address(), "PING\r\n", "PONG")).result, CheckResult::timeout);
}

TEST(HealthCheck, AgentLineIsReadUpToTheNewline) {
  // Verifies the agent read: one line without its '\n' from a node that speaks first, and a
  // refused connect as refused.
  test::Backend agent("drain 50%", test::BackendMode::greet_echo);
  asio::io_context context;
  std::optional<AgentLine> line;
  asio::co_spawn(context, read_agent_line(endpoint_of(agent.address()), 500ms),
                 [&](std::exception_ptr error, AgentLine result) {
                   if (!error) line = std::move(result);
                 });
  context.run_for(10s);
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(line->result, CheckResult::ok);
  EXPECT_EQ(line->line, "drain 50%");
}

TEST(HealthCheck, OffsetsSpreadNodesOverTheInterval) {
  // Verifies the first checks of n nodes are evenly spread over the interval.
  EXPECT_EQ(check_offset(0, 4, 2000ms), 0ms);
  EXPECT_EQ(check_offset(1, 4, 2000ms), 500ms);
  EXPECT_EQ(check_offset(3, 4, 2000ms), 1500ms);
  EXPECT_EQ(check_offset(999, 1000, 2000ms), 1998ms);
  EXPECT_EQ(check_offset(0, 0, 2000ms), 0ms);
}

TEST(HealthCheck, PrintableEscapesAndShortens) {
  // Verifies log text: control bytes escaped, long text cut with "...".
  EXPECT_EQ(printable("+OK\r\n"), "+OK\\x0d\\x0a");
  EXPECT_EQ(printable(std::string(10, 'x'), 4), "xxxx...");
}

}  // namespace
}  // namespace pb::balance
