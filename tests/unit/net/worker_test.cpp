#include "protobalance/net/worker.hpp"

#include <chrono>
#include <cstdlib>
#include <future>

#include <boost/asio/post.hpp>
#include <gtest/gtest.h>

namespace pb::net {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// Runs `f` on the worker's thread and waits for it (at most 5 s).
template <typename F>
auto on_worker(Worker& worker, F f) {
  std::packaged_task<decltype(f())()> task(std::move(f));
  auto result = task.get_future();
  asio::post(worker.context(), [&task] { task(); });
  if (result.wait_for(5s) != std::future_status::ready) {
    ADD_FAILURE() << "the worker did not run the task within 5 s";
    std::abort();  // the posted task still refers to this frame
  }
  return result.get();
}

// One end of a loopback TCP connection, as a session holds it, plus its peer.
struct Connection {
  explicit Connection(Worker&) : peer(io) {
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket connecting(io);
    connecting.connect(acceptor.local_endpoint());
    acceptor.accept(peer);
    socket = Fd(connecting.release());
  }
  asio::io_context io;
  Fd socket;
  tcp::socket peer;
};

TEST(Worker, IdleTimeoutsLongerThanTheWheelExpireOnTimeAndActivityPostponesThem) {
  // Verifies the idle-timeout wheel where a timeout spans several turns of the wheel (the usual
  // case: 1 h of 1 s ticks on 1024 slots; here 12 ticks of 20 ms on 4 slots): a silent session
  // is closed after its timeout and not before, and a session stamped with activity meanwhile
  // is filed again instead of closed.
  Worker worker(0, 20ms, 4);
  worker.start();
  Connection silent(worker);
  Connection busy(worker);
  SessionEntry silent_entry;
  SessionEntry busy_entry;
  const auto timeout = 240ms;
  const auto started = Clock::now();
  on_worker(worker, [&] {
    for (auto* e : {&silent_entry, &busy_entry}) e->idle_ticks = worker.ticks_for(timeout);
    silent_entry.client = &silent.socket;
    busy_entry.client = &busy.socket;
    worker.track(silent_entry);
    worker.track(busy_entry);
    return 0;
  });
  bool silent_closed = false;
  Clock::duration closed_after{};
  for (auto deadline = started + 3s; Clock::now() < deadline && !silent_closed;) {
    std::this_thread::sleep_for(10ms);
    silent_closed = on_worker(worker, [&] {
      busy_entry.last_tick = worker.tick();  // activity, as the relay stamps it
      return !silent.socket.is_open();
    });
    closed_after = Clock::now() - started;
  }
  EXPECT_TRUE(silent_closed) << "the silent session was never closed";
  EXPECT_GE(closed_after, timeout);
  EXPECT_LT(closed_after, 2s);
  const bool busy_open = on_worker(worker, [&] { return busy.socket.is_open(); });
  EXPECT_TRUE(busy_open) << "a session with activity was closed as idle";
  EXPECT_TRUE(on_worker(worker, [&] { return silent_entry.idle_expired; }));
  worker.stop();
  worker.join();
}

TEST(Worker, CloseSessionsFindsSessionsWithAndWithoutIdleTimeout) {
  // Verifies that closing sessions by a predicate (node taken offline, end of a stop) reaches
  // sessions in the wheel and those without an idle timeout alike.
  Worker worker(0, 20ms, 4);
  worker.start();
  Connection timed(worker);
  Connection untimed(worker);
  SessionEntry timed_entry;
  SessionEntry untimed_entry;
  on_worker(worker, [&] {
    timed_entry.idle_ticks = worker.ticks_for(1h);
    timed_entry.client = &timed.socket;
    untimed_entry.client = &untimed.socket;
    worker.track(timed_entry);
    worker.track(untimed_entry);
    return 0;
  });
  const auto closed = on_worker(worker, [&] {
    return worker.close_sessions([](const SessionEntry&) { return true; });
  });
  EXPECT_EQ(closed, 2U);
  EXPECT_TRUE(on_worker(worker, [&] { return !timed.socket.is_open() && !untimed.socket.is_open(); }));
  EXPECT_TRUE(timed_entry.killed);
  EXPECT_TRUE(untimed_entry.killed);
  worker.stop();
  worker.join();
}

}  // namespace
}  // namespace pb::net
