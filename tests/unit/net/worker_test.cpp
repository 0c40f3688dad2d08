#include "protobalance/net/worker.hpp"

#include <chrono>
#include <vector>

#include <gtest/gtest.h>

#include "net_fixtures.hpp"

namespace pb::net {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::on_worker;
using Clock = std::chrono::steady_clock;

// Records when (and whether) a deadline expired.
struct Expiry {
  static void expire(void* self, bool abandoned) {
    auto& e = *static_cast<Expiry*>(self);
    if (abandoned) {
      e.abandoned = true;
      return;
    }
    e.at = Clock::now();
    e.expired = true;
  }
  Deadline deadline{&Expiry::expire, this};
  std::atomic<bool> expired{false};
  bool abandoned = false;
  Clock::time_point at;
};

TEST(Worker, DeadlinesExpireInTimeOrderWhateverTheOrderTheyWereArmedIn) {
  // Verifies the worker's one deadline timer: a shorter deadline armed after a longer one still
  // expires first (the timer is re-armed earlier), the longer one is not cut short, and a
  // deadline disarmed before its time never expires.
  Worker worker(0, 50ms);
  worker.start();
  Expiry longer;
  Expiry shorter;
  Expiry disarmed;
  const auto started = Clock::now();
  on_worker(worker, [&] {
    worker.arm(longer.deadline, 600ms);
    worker.arm(disarmed.deadline, 100ms);
    worker.arm(shorter.deadline, 150ms);
    disarmed.deadline.disarm();
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return longer.expired.load() && shorter.expired.load(); }));
  EXPECT_GE(shorter.at - started, 150ms);
  EXPECT_LT(shorter.at - started, 550ms);
  EXPECT_GE(longer.at - started, 600ms);
  EXPECT_FALSE(disarmed.expired);
  EXPECT_FALSE(on_worker(worker, [&] { return longer.deadline.armed(); }));
  worker.stop();
  worker.join();
}

TEST(Worker, ReArmingADeadlineMovesIt) {
  // Verifies that arming an armed deadline again replaces its time (a phase that starts the
  // next phase's clock): it expires once, at the later time.
  Worker worker(0, 50ms);
  worker.start();
  Expiry e;
  const auto started = Clock::now();
  on_worker(worker, [&] {
    worker.arm(e.deadline, 50ms);
    worker.arm(e.deadline, 300ms);
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return e.expired.load(); }));
  EXPECT_GE(e.at - started, 300ms);
  worker.stop();
  worker.join();
}

TEST(Worker, ADeadlineLeftArmedIsAbandonedWhenTheWorkerGoes) {
  // Verifies the teardown rule for deadlines of others (a probe's connect): they are told to
  // free themselves without expiring.
  Expiry e;
  {
    Worker worker(0, 50ms);
    worker.start();
    on_worker(worker, [&] {
      worker.arm(e.deadline, 1h);
      return 0;
    });
    worker.stop();
    worker.join();
  }
  EXPECT_TRUE(e.abandoned);
  EXPECT_FALSE(e.expired);
}

TEST(Worker, ATurnRunsOnceAfterTheCurrentWorkHowEverOftenItWasDeferred) {
  // Verifies defer(): queuing a turn twice runs it once, later (not from within the call), and
  // it can be queued again from within its own run for another round.
  Worker worker(0, 50ms);
  worker.start();
  struct Counter {
    static void run(void* self) {
      auto& c = *static_cast<Counter*>(self);
      ++c.runs;
      if (c.runs == 1) c.worker->defer(c.turn);  // one more round
    }
    Worker* worker;
    std::atomic<int> runs{0};
    Turn turn{&Counter::run, this};
  } counter{&worker};
  const int during = on_worker(worker, [&] {
    worker.defer(counter.turn);
    worker.defer(counter.turn);
    return counter.runs.load();
  });
  EXPECT_EQ(during, 0);
  ASSERT_TRUE(eventually([&] { return counter.runs.load() == 2; }));
  on_worker(worker, [] { return 0; });  // one more pass of the queue
  EXPECT_EQ(counter.runs.load(), 2);
  worker.stop();
  worker.join();
}

}  // namespace
}  // namespace pb::net
