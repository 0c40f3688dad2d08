#include "protobalance/net/poller.hpp"
#include "protobalance/net/worker.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

using namespace std::chrono_literals;

// A worker's poller, on the worker's thread (its loop, run as in production).
struct Loop {
  ~Loop() {
    worker.stop();
    worker.join();
  }
  void start() { worker.start(); }
  // Reads `f()` on the loop's thread.
  template <typename F>
  auto read(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    worker.post([&task] { task(); });
    EXPECT_EQ(result.wait_for(5s), std::future_status::ready);
    return result.get();
  }
  // Polls `f()` on the loop's thread until it holds or 2 s pass.
  template <typename F>
  bool until(F f) {
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    while (!read(f)) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(2ms);
    }
    return true;
  }
  Worker worker{0, 50ms};
  Poller& poller = worker.poller();
};

// Counts the events a slot was told about.
struct Counter {
  static void notify(void* self, PollSlot&) { ++static_cast<Counter*>(self)->events; }
  int events = 0;
};

struct SocketPair {
  SocketPair() {
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
  }
  ~SocketPair() {
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
  }
  int fds[2] = {-1, -1};
};

TEST(Poller, ReportsReadinessOncePerEdgeAndThePeersClose) {
  // Verifies the poller's contract: a socket added is reported writable; bytes
  // arriving make it readable with one event (edge-triggered: no repeat while nothing new
  // comes, although the byte is unread); more bytes raise a new event; the peer's close sets
  // peer_closed.
  Loop loop;
  SocketPair pair;
  PollSlot slot;
  Counter counter;
  slot.writable = false;
  loop.start();
  ASSERT_TRUE(loop.read([&] {
    slot.attach(&Counter::notify, &counter);
    return loop.poller.add(pair.fds[0], slot);
  }));
  EXPECT_TRUE(loop.read([&] { return slot.registered; }));
  ASSERT_TRUE(loop.until([&] { return slot.writable; }));
  EXPECT_FALSE(loop.read([&] { return slot.readable; }));
  const int after_registration = loop.read([&] { return counter.events; });

  ASSERT_EQ(::write(pair.fds[1], "a", 1), 1);
  ASSERT_TRUE(loop.until([&] { return slot.readable; }));
  EXPECT_EQ(loop.read([&] { return counter.events; }), after_registration + 1);
  loop.read([&] { return slot.readable = false; });
  // A later, unrelated event of another socket drains the set: still nothing for this one.
  SocketPair other;
  PollSlot other_slot;
  ASSERT_TRUE(loop.read([&] { return loop.poller.add(other.fds[0], other_slot); }));
  ASSERT_EQ(::write(other.fds[1], "z", 1), 1);
  ASSERT_TRUE(loop.until([&] { return other_slot.readable; }));
  EXPECT_EQ(loop.read([&] { return counter.events; }), after_registration + 1);
  EXPECT_FALSE(loop.read([&] { return slot.readable; }));

  ASSERT_EQ(::write(pair.fds[1], "b", 1), 1);
  ASSERT_TRUE(loop.until([&] { return slot.readable; }));
  EXPECT_EQ(loop.read([&] { return counter.events; }), after_registration + 2);
  EXPECT_FALSE(loop.read([&] { return slot.peer_closed; }));

  ::close(pair.fds[1]);
  pair.fds[1] = -1;
  ASSERT_TRUE(loop.until([&] { return slot.peer_closed; }));
}

TEST(Poller, ADetachedSlotOnlyRecordsEvents) {
  // Verifies that a slot without a target (between two owners) still has its state kept up to
  // date, without any call.
  Loop loop;
  SocketPair pair;
  PollSlot slot;
  loop.start();
  ASSERT_TRUE(loop.read([&] { return loop.poller.add(pair.fds[0], slot); }));
  ASSERT_EQ(::write(pair.fds[1], "a", 1), 1);
  EXPECT_TRUE(loop.until([&] { return slot.readable; }));
}

TEST(Poller, AddFailsForABadDescriptor) {
  // Verifies that a failed registration is reported (false, errno) and leaves the slot
  // unregistered.
  Poller poller;
  PollSlot slot;
  EXPECT_FALSE(poller.add(-1, slot));
  EXPECT_EQ(errno, EBADF);
  EXPECT_FALSE(slot.registered);
}

}  // namespace
}  // namespace pb::net
