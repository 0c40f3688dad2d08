#include "protobalance/net/relay.hpp"

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <string>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

namespace pb::net {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;

// A loopback TCP connection: the end a session would hold, non-blocking, and its peer.
struct Link {
  Link() : peer(io) {
    tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket connecting(io);
    connecting.connect(acceptor.local_endpoint());
    acceptor.accept(peer);
    connecting.non_blocking(true);
    end = Fd(connecting.release());
  }
  asio::io_context io;
  Fd end;
  tcp::socket peer;
};

// What a relaying session keeps: both sockets, its entry, and word of how it ended.
struct Session {
  Link client;
  Link node;
  SessionEntry entry;
  std::promise<RelayEnd> ended;  // set when the relay completes
  std::atomic<bool> frame_gone{false};
};

// Sets a flag when the coroutine frame that holds it is destroyed, run or not.
struct FrameGuard {
  explicit FrameGuard(std::atomic<bool>& f) : flag(f) {}
  FrameGuard(const FrameGuard&) = delete;
  FrameGuard& operator=(const FrameGuard&) = delete;
  ~FrameGuard() { flag = true; }
  std::atomic<bool>& flag;
};

void start_relay(Worker& worker, Session& s) {
  asio::co_spawn(
      worker.context(),
      [&worker, &s]() -> Task<void> {
        const FrameGuard guard(s.frame_gone);
        s.entry.client = &s.client.end;
        s.entry.node = &s.node.end;
        worker.track(s.entry);
        const RelayResult result =
            co_await async_relay(s.client.end, s.node.end, worker, s.entry, false, use_task);
        s.ended.set_value(result.end);
      },
      asio::detached);
}

// Passes `text` from the client's peer to the node's peer through the relay.
bool passes(Session& s, const std::string& text) {
  asio::write(s.client.peer, asio::buffer(text));
  std::string got(text.size(), '\0');
  s.node.peer.non_blocking(false);
  // The relay runs on the worker's thread; a blocking read with a socket timeout keeps this
  // bounded.
  const timeval limit{5, 0};
  ::setsockopt(s.node.peer.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  boost::system::error_code ec;
  asio::read(s.node.peer, asio::buffer(got), ec);
  return !ec && got == text;
}

TEST(Relay, ClosingTheSessionEndsItsRelayAsClosed) {
  // Verifies SessionEntry::close() on a relay waiting in the worker's poller (node offline,
  // idle timeout, end of a stop): the relay completes as `closed`, later, on the worker.
  Worker worker(0, 50ms);
  worker.start();
  Session s;
  start_relay(worker, s);
  ASSERT_TRUE(passes(s, "ping"));
  std::promise<std::size_t> closed;
  asio::post(worker.context(), [&] {
    closed.set_value(worker.close_sessions([](const SessionEntry&) { return true; }));
  });
  auto ended = s.ended.get_future();
  ASSERT_EQ(ended.wait_for(5s), std::future_status::ready) << "the relay did not end";
  EXPECT_EQ(ended.get(), RelayEnd::closed);
  auto count = closed.get_future();
  ASSERT_EQ(count.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(count.get(), 1U);
  worker.stop();
  worker.join();
}

TEST(Relay, AWorkerDestroyedWithARelayWaitingDestroysTheSession) {
  // Verifies the teardown of a relay that waits only in the worker's poller (no operation of
  // it is in Asio's queues): destroying the worker destroys the session's coroutine frame
  // (LeakSanitizer reports it otherwise) without completing the relay.
  Session s;
  {
    Worker worker(0, 50ms);
    worker.start();
    start_relay(worker, s);
    ASSERT_TRUE(passes(s, "ping"));
    worker.stop();
    worker.join();
  }
  EXPECT_TRUE(s.frame_gone);
  EXPECT_EQ(s.ended.get_future().wait_for(0s), std::future_status::timeout);
}

}  // namespace
}  // namespace pb::net
