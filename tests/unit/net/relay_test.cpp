#include "protobalance/net/relay.hpp"

#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "net_fixtures.hpp"

namespace pb::net {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using testing::Link;
using testing::eventually;
using testing::on_worker;

// A relay as its owner (a Connection) runs it: both sockets in the worker's poller, events
// forwarded, a yielding direction given its turn, the outcome read when it is done.
struct RelayRun {
  explicit RelayRun(Worker& w) : worker(w) {}
  // The worker stops first: no event may reach the slots of a run that is gone.
  ~RelayRun() {
    worker.stop();
    worker.join();
  }
  RelayRun(const RelayRun&) = delete;
  RelayRun& operator=(const RelayRun&) = delete;

  // `client_readable`: the client's slot is marked readable before the start (as after an event);
  // false: as a connection registers a freshly accepted socket, which reports bytes already
  // queued on it with its first event.
  void start(bool allow_early_close, bool client_readable = true) {
    on_worker(worker, [&] {
      client_slot.readable = client_readable;
      EXPECT_TRUE(worker.poller().add(client.end.native_handle(), client_slot));
      EXPECT_TRUE(worker.poller().add(node.end.native_handle(), node_slot));
      client_slot.attach(&RelayRun::on_poll, this);
      node_slot.attach(&RelayRun::on_poll, this);
      relay.start(client.end, node.end, client_slot, node_slot, worker.buffers(), worker.pipes(),
                  {.allow_early_close = allow_early_close, .half_close = half_close});
      check();
      return 0;
    });
  }
  static void on_poll(void* self, PollSlot& slot) {
    auto& run = *static_cast<RelayRun*>(self);
    if (run.relay.done()) return;
    run.relay.on_poll(slot);
    run.check();
  }
  static void on_turn(void* self) {
    auto& run = *static_cast<RelayRun*>(self);
    run.relay.resume();
    run.check();
  }
  void check() {
    if (relay.done()) {
      result = relay.result();
      // As the owner does: closing both sockets sends the last FIN; after an early close the
      // client's socket is kept for the next node.
      if (result.end != RelayEnd::node_closed_early) client.end.close();
      node.end.close();
      done = true;
    } else if (relay.yielding()) {
      worker.defer(turn);
    }
  }
  bool finished() { return eventually([&] { return done.load(); }); }

  bool half_close = true;  // RelayOptions::half_close, set before start()
  Worker& worker;
  Link client;
  Link node;
  PollSlot client_slot;
  PollSlot node_slot;
  Relay relay;
  Turn turn{&RelayRun::on_turn, this};
  std::atomic<bool> done{false};
  RelayResult result;
};

// Reads `size` bytes with recv() (bounded by the socket's 5 s SO_RCVTIMEO; Asio's blocking
// read would wait on without a limit); returns what came.
std::string read_exactly(asio::ip::tcp::socket& socket, std::size_t size) {
  std::string got(size, '\0');
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::recv(socket.native_handle(), got.data() + done, size - done, 0);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  got.resize(done);
  return got;
}

// True if the next read says end of stream (within the socket's 5 s SO_RCVTIMEO).
bool at_eof(asio::ip::tcp::socket& socket) {
  char byte = 0;
  return ::recv(socket.native_handle(), &byte, 1, 0) == 0;
}

class RelayTest : public ::testing::Test {
 protected:
  void SetUp() override { worker_.start(); }
  void TearDown() override { stop(); }
  void stop() {
    worker_.stop();
    worker_.join();
  }
  Worker worker_{0, 50ms};
};

TEST_F(RelayTest, PassesAHalfCloseFromTheClientWhileTheNodeGoesOnSending) {
  // Verifies half-close client -> node: the client's FIN reaches the node as an end of stream,
  // the node's reply still reaches the client afterwards, and the relay finishes once the node
  // has closed its side too, with both byte counts.
  RelayRun run(worker_);
  run.start(false);
  asio::write(run.client.peer, asio::buffer(std::string("hello")));
  EXPECT_EQ(read_exactly(run.node.peer, 5), "hello");
  run.client.peer.shutdown(asio::socket_base::shutdown_send);
  EXPECT_TRUE(at_eof(run.node.peer)) << "the client's FIN was not passed on";
  asio::write(run.node.peer, asio::buffer(std::string("reply!")));
  EXPECT_EQ(read_exactly(run.client.peer, 6), "reply!");
  EXPECT_FALSE(run.done) << "the relay ended while the node was still sending";
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::finished);
  EXPECT_EQ(run.result.bytes_to_node, 5U);
  EXPECT_EQ(run.result.bytes_to_client, 6U);
  EXPECT_TRUE(at_eof(run.client.peer));
}

TEST_F(RelayTest, RelaysBytesQueuedBeforeTheSocketsWereRegistered) {
  // Verifies that a direction whose slot is not marked readable starts from the event of its
  // registration: a request and a greeting queued on both sockets before the start, with
  // neither slot marked readable, are relayed both ways without any further byte or event.
  RelayRun run(worker_);
  asio::write(run.client.peer, asio::buffer(std::string("request")));
  asio::write(run.node.peer, asio::buffer(std::string("greeting")));
  run.start(false, false);
  EXPECT_EQ(read_exactly(run.node.peer, 7), "request");
  EXPECT_EQ(read_exactly(run.client.peer, 8), "greeting");
  run.client.peer.shutdown(asio::socket_base::shutdown_send);
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::finished);
  EXPECT_EQ(run.result.bytes_to_node, 7U);
  EXPECT_EQ(run.result.bytes_to_client, 8U);
}

TEST_F(RelayTest, PassesAHalfCloseFromTheNodeWhileTheClientGoesOnSending) {
  // Verifies half-close node -> client: a node that sends a banner and its FIN first still
  // receives what the client sends afterwards.
  RelayRun run(worker_);
  run.start(false);
  asio::write(run.node.peer, asio::buffer(std::string("banner")));
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  EXPECT_EQ(read_exactly(run.client.peer, 6), "banner");
  EXPECT_TRUE(at_eof(run.client.peer)) << "the node's FIN was not passed on";
  asio::write(run.client.peer, asio::buffer(std::string("late")));
  EXPECT_EQ(read_exactly(run.node.peer, 4), "late");
  run.client.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::finished);
  EXPECT_EQ(run.result.bytes_to_node, 4U);
  EXPECT_EQ(run.result.bytes_to_client, 6U);
}

TEST_F(RelayTest, WithoutHalfCloseTheNodesEndClosesTheClientAfterItsLastBytes) {
  // Verifies half_close = false: a node that sends its last bytes and its FIN ends the relay
  // without waiting for the client's FIN (the client reads the bytes, then the end of the
  // stream, while it has not closed anything itself), and the outcome is an ordinary finish.
  RelayRun run(worker_);
  run.half_close = false;
  run.start(false);
  asio::write(run.client.peer, asio::buffer(std::string("req")));
  EXPECT_EQ(read_exactly(run.node.peer, 3), "req");
  asio::write(run.node.peer, asio::buffer(std::string("reply")));
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished()) << "the relay waited for the client";
  EXPECT_EQ(read_exactly(run.client.peer, 5), "reply");
  EXPECT_TRUE(at_eof(run.client.peer));
  EXPECT_EQ(run.result.end, RelayEnd::finished);
  EXPECT_EQ(run.result.bytes_to_node, 3U);
  EXPECT_EQ(run.result.bytes_to_client, 5U);
}

TEST_F(RelayTest, WithoutHalfCloseTheClientsEndIsStillPassedOn) {
  // Verifies that half_close = false concerns the node's end only: a client that sends its
  // request and its FIN still gets the answer the node sends after reading that FIN.
  RelayRun run(worker_);
  run.half_close = false;
  run.start(false);
  asio::write(run.client.peer, asio::buffer(std::string("query")));
  run.client.peer.shutdown(asio::socket_base::shutdown_send);
  EXPECT_EQ(read_exactly(run.node.peer, 5), "query");
  EXPECT_TRUE(at_eof(run.node.peer)) << "the client's FIN was not passed on";
  asio::write(run.node.peer, asio::buffer(std::string("answer")));
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  EXPECT_EQ(read_exactly(run.client.peer, 6), "answer");
  EXPECT_TRUE(at_eof(run.client.peer));
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::finished);
}

TEST_F(RelayTest, HoldsBackWithAStalledReaderAndSplicesABulkTransferIntact) {
  // Verifies back-pressure and the switch to splice(): with small socket buffers and a node that
  // reads nothing, a 4 MiB upload cannot complete (the relay stops reading instead of
  // buffering); once the node reads, every byte arrives in order, the relay has used a pipe
  // (given back to the worker's pool) and holds no buffer afterwards.
  RelayRun run(worker_);
  const int small = 16 * 1024;
  for (int fd : {run.client.peer.native_handle(), run.node.end.native_handle()}) {
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  }
  for (int fd : {run.client.end.native_handle(), run.node.peer.native_handle()}) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  run.start(false);
  constexpr std::size_t kTotal = 4 * 1024 * 1024;
  std::string data(kTotal, '\0');
  for (std::size_t i = 0; i < kTotal; ++i) {
    data[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  }
  std::atomic<std::size_t> written{0};
  std::thread writer([&] {
    const timeval limit{10, 0};
    ::setsockopt(run.client.peer.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
    std::size_t done = 0;
    while (done < kTotal) {
      const ssize_t n = ::send(run.client.peer.native_handle(), data.data() + done,
                               std::min<std::size_t>(64 * 1024, kTotal - done), MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
      written = done;
    }
    ::shutdown(run.client.peer.native_handle(), SHUT_WR);
  });
  EXPECT_TRUE(eventually([&] { return written.load() > 0; }));
  EXPECT_FALSE(eventually([&] { return written.load() == kTotal; }, 300ms))
      << "the whole upload went through a node that reads nothing: nothing held it back";
  const std::string got = read_exactly(run.node.peer, kTotal);
  writer.join();
  EXPECT_TRUE(got == data) << "bytes lost or reordered (" << got.size() << " of " << kTotal << ")";
  EXPECT_TRUE(at_eof(run.node.peer));
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.bytes_to_node, kTotal);
  EXPECT_GE(on_worker(worker_, [&] { return worker_.pipes().cached(); }), 1U)
      << "no pipe was used: the bulk transfer was not spliced";
  EXPECT_EQ(on_worker(worker_, [&] { return worker_.buffers().outstanding(); }), 0U);
}

TEST_F(RelayTest, ANodeClosingBeforeAnyByteEndsEarlyAndLeavesTheClientUsable) {
  // Verifies the fall-over signal: with allow_early_close, a node that closes before any byte
  // moved ends the relay as node_closed_early, without touching the client socket (the owner
  // offers it to the next node).
  RelayRun run(worker_);
  run.start(true);
  run.node.peer.close();
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::node_closed_early);
  const int fd = run.client.end.native_handle();
  ASSERT_GE(fd, 0);
  // The client's socket still works: a byte sent now is still readable from it.
  asio::write(run.client.peer, asio::buffer(std::string("x")));
  EXPECT_TRUE(eventually([&] {
    char byte = 0;
    return ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 1;
  }));
}

TEST_F(RelayTest, ANodeClosingAfterTrafficEndsNormally) {
  // Verifies that once bytes moved, a node's close is an ordinary end of stream (no fall-over),
  // passed on to the client.
  RelayRun run(worker_);
  run.start(true);
  asio::write(run.client.peer, asio::buffer(std::string("req")));
  EXPECT_EQ(read_exactly(run.node.peer, 3), "req");
  run.node.peer.shutdown(asio::socket_base::shutdown_send);
  EXPECT_TRUE(at_eof(run.client.peer));
  run.client.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::finished);
}

TEST_F(RelayTest, ANodesLastBytesAndItsFinInOneEventEndTheDirectionAfterThem) {
  // Verifies the end of stream taken from EPOLLRDHUP after a short read (no read for the 0):
  // the node's reply and its FIN are written while the worker is busy, so one event reports
  // both; the client gets every byte, then the FIN.
  RelayRun run(worker_);
  run.start(false);
  asio::write(run.client.peer, asio::buffer(std::string("req")));
  EXPECT_EQ(read_exactly(run.node.peer, 3), "req");
  on_worker(worker_, [&] {
    asio::write(run.node.peer, asio::buffer(std::string("reply")));
    run.node.peer.shutdown(asio::socket_base::shutdown_send);
    return 0;
  });
  EXPECT_EQ(read_exactly(run.client.peer, 5), "reply");
  EXPECT_TRUE(at_eof(run.client.peer));
  run.client.peer.shutdown(asio::socket_base::shutdown_send);
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::finished);
  EXPECT_EQ(run.result.bytes_to_client, 5U);
}

TEST_F(RelayTest, ANodeResettingBehindItsLastBytesIsANodeError) {
  // Verifies that a reset behind the node's last bytes (EPOLLERR with EPOLLRDHUP) is read and
  // reported as the node's error, not taken for an end of stream.
  RelayRun run(worker_);
  run.start(false);
  asio::write(run.client.peer, asio::buffer(std::string("req")));
  EXPECT_EQ(read_exactly(run.node.peer, 3), "req");
  on_worker(worker_, [&] {
    asio::write(run.node.peer, asio::buffer(std::string("reply")));
    run.node.peer.set_option(asio::socket_base::linger(true, 0));
    run.node.peer.close();  // with a zero linger: a reset
    return 0;
  });
  ASSERT_TRUE(run.finished());
  EXPECT_EQ(run.result.end, RelayEnd::node_error);
}

TEST_F(RelayTest, AbortEndsAWaitingRelayAtOnceAsClosed) {
  // Verifies abort() (idle timeout, node offline, stop) on a relay waiting in the poller: it is
  // done at once, as closed, holding no buffer.
  RelayRun run(worker_);
  run.start(false);
  asio::write(run.client.peer, asio::buffer(std::string("ping")));
  EXPECT_EQ(read_exactly(run.node.peer, 4), "ping");
  const bool done = on_worker(worker_, [&] {
    run.relay.abort();
    return run.relay.done();
  });
  EXPECT_TRUE(done);
  EXPECT_EQ(run.relay.result().end, RelayEnd::closed);
  EXPECT_EQ(on_worker(worker_, [&] { return worker_.buffers().outstanding(); }), 0U);
}

}  // namespace
}  // namespace pb::net
