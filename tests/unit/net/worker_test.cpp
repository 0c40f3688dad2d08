#include "protobalance/net/worker.hpp"

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "net_fixtures.hpp"

namespace pb::net {
namespace {

using namespace std::chrono_literals;
using testing::eventually;
using testing::on_worker;
using Clock = std::chrono::steady_clock;

// The kernel's thread id of the worker's loop.
long loop_thread_id(Worker& worker) {
  return on_worker(worker, [] { return static_cast<long>(::syscall(SYS_gettid)); });
}

// True once the thread `tid` of this process is asleep (state S: blocked in its epoll_wait,
// the only place a worker sleeps), within 5 s.
bool asleep(long tid) {
  return eventually([tid] {
    std::ifstream stat("/proc/self/task/" + std::to_string(tid) + "/stat");
    std::string line;
    std::getline(stat, line);
    const auto paren = line.rfind(')');
    return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] == 'S';
  });
}

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

TEST(Worker, APostFromAnotherThreadWakesTheBlockedLoop) {
  // Verifies the cross-thread wake-up: with a tick of an hour and no deadline, the loop blocks
  // in its epoll_wait for an hour; work posted from this thread must still run at once (the
  // eventfd), and again for a second post after the loop went back to sleep.
  Worker worker(0, 1h);
  worker.start();
  const long tid = loop_thread_id(worker);
  for (int round = 0; round < 2; ++round) {
    ASSERT_TRUE(asleep(tid)) << "round " << round;
    std::promise<bool> ran;
    auto done = ran.get_future();
    worker.post([&ran, &worker] { ran.set_value(worker.running_in_this_thread()); });
    ASSERT_EQ(done.wait_for(2s), std::future_status::ready) << "round " << round;
    EXPECT_TRUE(done.get());
  }
  EXPECT_FALSE(worker.running_in_this_thread());
  worker.stop();
  worker.join();
}

TEST(Worker, WorkPostedBeforeAnEventRunsBeforeTheEventIsDelivered) {
  // Verifies the order within a round: work posted from another thread before a socket became
  // readable runs before that event is delivered (a reload's new route applies to a client
  // that connects after the reload). The loop is held inside a posted task while both happen,
  // so that its next wait returns the wake-up and the event together.
  Worker worker(0, 1h);
  worker.start();
  int fds[2] = {-1, -1};
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  struct Order {
    static void notify(void* self, PollSlot& slot) {
      if (slot.readable) static_cast<Order*>(self)->seen.push_back(2);
    }
    std::vector<int> seen;  // worker thread only
  } order;
  PollSlot slot;
  ASSERT_TRUE(on_worker(worker, [&] {
    slot.attach(&Order::notify, &order);
    return worker.poller().add(fds[0], slot);
  }));
  std::promise<void> held;
  std::promise<void> release;
  auto gate = release.get_future();
  worker.post([&] {
    held.set_value();
    gate.wait_for(5s);
  });
  ASSERT_EQ(held.get_future().wait_for(5s), std::future_status::ready);
  worker.post([&] { order.seen.push_back(1); });
  ASSERT_EQ(::write(fds[1], "a", 1), 1);
  release.set_value();
  ASSERT_TRUE(eventually([&] { return on_worker(worker, [&] { return order.seen.size(); }) >= 2; },
                         3000ms));
  EXPECT_EQ(on_worker(worker, [&] { return order.seen; }), (std::vector<int>{1, 2}));
  worker.stop();
  worker.join();
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(Worker, WorkPostedBeforeTheStartRunsOnceTheLoopRuns) {
  // Verifies that post() before start() (the listeners are started this way) is kept, not lost.
  Worker worker(0, 1h);
  std::promise<void> ran;
  auto done = ran.get_future();
  worker.post([&ran] { ran.set_value(); });
  EXPECT_EQ(done.wait_for(50ms), std::future_status::timeout);
  worker.start();
  EXPECT_EQ(done.wait_for(5s), std::future_status::ready);
  worker.stop();
  worker.join();
}

TEST(Worker, WorkPostedOnTheWorkerRunsAfterTheCurrentWork) {
  // Verifies post() from the worker's own thread: never within the call, but soon after (the
  // loop does not block while work is queued, even with an hour's tick).
  Worker worker(0, 1h);
  worker.start();
  std::atomic<int> runs{0};
  const int during = on_worker(worker, [&] {
    worker.post([&] { ++runs; });
    return runs.load();
  });
  EXPECT_EQ(during, 0);
  EXPECT_TRUE(eventually([&] { return runs.load() == 1; }, 2000ms));
  worker.stop();
  worker.join();
}

TEST(Worker, ADeadlineEndsTheLoopsWaitWithoutAnyTick) {
  // Verifies the timer side of the loop: with an hour's tick, the wait ends for the earliest
  // deadline (not for the sweep), at its time and not before.
  Worker worker(0, 1h);
  worker.start();
  Expiry e;
  const auto started = Clock::now();
  on_worker(worker, [&] {
    worker.arm(e.deadline, 200ms);
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return e.expired.load(); }, 3000ms));
  EXPECT_GE(e.at - started, 200ms);
  EXPECT_LT(e.at - started, 2000ms);
  worker.stop();
  worker.join();
}

TEST(Worker, TheIdleSweepRunsEveryTick) {
  // Verifies the sweep timer of the loop: the coarse clock advances about once per tick.
  Worker worker(0, 20ms);
  worker.start();
  ASSERT_TRUE(
      eventually([&] { return on_worker(worker, [&] { return worker.tick(); }) >= 5; }, 3000ms));
  worker.stop();
  worker.join();
}

TEST(Worker, StopFromAnotherThreadEndsTheBlockedLoop) {
  // Verifies stop() while the loop sleeps with nothing to do for an hour: join() returns soon.
  Worker worker(0, 1h);
  worker.start();
  ASSERT_TRUE(asleep(loop_thread_id(worker)));
  std::thread stopper([&worker] { worker.stop(); });
  auto joined = std::async(std::launch::async, [&worker] { worker.join(); });
  EXPECT_EQ(joined.wait_for(5s), std::future_status::ready);
  stopper.join();
  if (joined.wait_for(0s) != std::future_status::ready) std::abort();  // would hang otherwise
}

}  // namespace
}  // namespace pb::net
