#include "protobalance/net/connect.hpp"

#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <gtest/gtest.h>

#include "support/backend.hpp"

namespace pb::net {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  return {asio::ip::make_address(address.substr(0, colon)),
          static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

struct Outcome {
  boost::system::error_code ec;
  Clock::duration elapsed{};
};

// Runs one connect_with_timeout per (address, timeout) on `worker`, all at once, and returns
// their outcomes in the same order (each within `deadline`).
std::vector<Outcome> connect_all(Worker& worker,
                                 const std::vector<std::pair<std::string, std::chrono::milliseconds>>& targets,
                                 std::chrono::seconds deadline = 10s) {
  std::vector<std::promise<Outcome>> promises(targets.size());
  std::vector<std::future<Outcome>> futures;
  for (auto& p : promises) futures.push_back(p.get_future());
  for (std::size_t i = 0; i < targets.size(); ++i) {
    asio::co_spawn(
        worker.context(),
        [&worker, endpoint = endpoint_of(targets[i].first), timeout = targets[i].second,
         &promise = promises[i]]() -> Task<void> {
          PollSlot slot;
          Fd socket;
          const auto started = Clock::now();
          auto ec = co_await connect_with_timeout(worker, socket, slot, endpoint, timeout);
          promise.set_value({ec, Clock::now() - started});
        },
        asio::detached);
  }
  std::vector<Outcome> outcomes;
  for (auto& f : futures) {
    if (f.wait_for(deadline) != std::future_status::ready) {
      ADD_FAILURE() << "a connect did not finish within " << deadline.count() << " s";
      worker.stop();
      worker.join();
      std::abort();  // the coroutines still reference the promises
    }
    outcomes.push_back(f.get());
  }
  return outcomes;
}

class ConnectTest : public ::testing::Test {
 protected:
  void SetUp() override { worker_.start(); }
  void TearDown() override {
    worker_.stop();
    worker_.join();
  }
  Worker worker_{0, 50ms};
};

TEST_F(ConnectTest, ConnectsToAListeningNode) {
  // Verifies that a connect to a listening loopback port succeeds.
  test::Backend node("n1");
  auto outcomes = connect_all(worker_, {{node.address(), 2000ms}});
  EXPECT_FALSE(outcomes[0].ec) << outcomes[0].ec.message();
}

TEST_F(ConnectTest, RefusedConnectReturnsAtOnce) {
  // Verifies that a refused connect reports connection_refused without waiting for its timeout.
  auto outcomes = connect_all(worker_, {{test::closed_port_address(), 5000ms}});
  EXPECT_EQ(outcomes[0].ec, asio::error::connection_refused) << outcomes[0].ec.message();
  EXPECT_LT(outcomes[0].elapsed, 1s);
}

TEST_F(ConnectTest, EachHangingConnectTimesOutAtItsOwnDeadline) {
  // Verifies the worker's shared connect timer: a connect with a shorter timeout started after
  // one with a longer timeout still expires first (the timer is re-armed earlier), the longer
  // one is not cut short, and a connect that succeeds meanwhile is untouched.
  test::BlackHole hole;
  test::Backend node("n1");
  auto outcomes = connect_all(
      worker_, {{hole.address(), 900ms}, {hole.address(), 200ms}, {node.address(), 900ms}});
  EXPECT_EQ(outcomes[0].ec, asio::error::timed_out) << outcomes[0].ec.message();
  EXPECT_EQ(outcomes[1].ec, asio::error::timed_out) << outcomes[1].ec.message();
  EXPECT_FALSE(outcomes[2].ec) << outcomes[2].ec.message();
  EXPECT_GE(outcomes[1].elapsed, 200ms);
  EXPECT_LT(outcomes[1].elapsed, 700ms);  // not held back to the 900 ms deadline
  EXPECT_GE(outcomes[0].elapsed, 900ms);
  EXPECT_LT(outcomes[0].elapsed, 5s);
}

TEST_F(ConnectTest, ConnectThatCompletesLaterIsReportedWhenItDoes) {
  // Verifies the path for a connect that is still in progress when connect() returns (a
  // remote node): the SYN is dropped at first, room is made 300 ms later, and the connect
  // succeeds at the kernel's SYN retransmission, well before its 5 s timeout.
  test::BlackHole hole;
  auto drainer = std::async(std::launch::async, [&hole] {
    std::this_thread::sleep_for(300ms);
    hole.drain();
  });
  auto outcomes = connect_all(worker_, {{hole.address(), 5000ms}});
  drainer.get();
  EXPECT_FALSE(outcomes[0].ec) << outcomes[0].ec.message();
  EXPECT_GE(outcomes[0].elapsed, 300ms);
  EXPECT_LT(outcomes[0].elapsed, 5s);
}

TEST_F(ConnectTest, TimersKeepWorkingAcrossManyRounds) {
  // Verifies that the shared timer is re-armed after it fired with nothing left, round after
  // round (a timer that stayed disarmed would leave the later connects hanging).
  test::BlackHole hole;
  for (int round = 0; round < 3; ++round) {
    auto outcomes = connect_all(worker_, {{hole.address(), 100ms}});
    EXPECT_EQ(outcomes[0].ec, asio::error::timed_out) << "round " << round;
  }
}

}  // namespace
}  // namespace pb::net
