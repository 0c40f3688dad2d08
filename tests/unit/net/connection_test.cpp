#include "protobalance/net/connection.hpp"

#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <gtest/gtest.h>

#include "net_fixtures.hpp"
#include "protobalance/net/block_list.hpp"
#include "protobalance/net/listener.hpp"
#include "protobalance/net/proxy_header_in.hpp"
#include "protobalance/net/proxy_protocol.hpp"
#include "support/backend.hpp"
#include "support/proxy_backend.hpp"

namespace pb::net {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;
using testing::eventually;
using testing::NodeSpec;
using testing::on_worker;
using testing::RouteFixture;
using Clock = std::chrono::steady_clock;

// One worker with one listener on 127.0.0.1:0 sending its connections along `route`.
class Balancer {
 public:
  explicit Balancer(std::shared_ptr<const Route> route, std::chrono::milliseconds tick = 50ms,
                    std::size_t wheel_slots = 1024)
      : worker_(0, tick, wheel_slots) {
    auto acceptor = open_acceptor(binder_, {asio::ip::make_address("127.0.0.1"), 0});
    endpoint_ = acceptor.local_endpoint();
    listener_ = std::make_shared<Listener>(worker_, std::move(acceptor), std::move(route), stats_);
    worker_.start();
    on_worker(worker_, [&] {
      listener_->start();
      return 0;
    });
  }
  ~Balancer() {
    worker_.stop();
    worker_.join();
  }
  Balancer(const Balancer&) = delete;
  Balancer& operator=(const Balancer&) = delete;

  Worker& worker() { return worker_; }
  const tcp::endpoint& endpoint() const { return endpoint_; }
  std::size_t active() const { return worker_.active_connections(); }

 private:
  asio::io_context binder_;  // opens and binds the listening socket (the control thread's job)
  Worker worker_;
  AcceptStats stats_;
  tcp::endpoint endpoint_;
  std::shared_ptr<Listener> listener_;
};

// A blocking client with bounded reads (5 s).
struct Client {
  explicit Client(const tcp::endpoint& to) : socket(io) {
    socket.connect(to);
    socket.set_option(tcp::no_delay(true));
    const timeval limit{5, 0};
    ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  }
  void send(const std::string& text) { asio::write(socket, asio::buffer(text)); }
  void send_bytewise(const std::string& text) {
    for (char c : text) {
      asio::write(socket, asio::buffer(&c, 1));
      std::this_thread::sleep_for(1ms);  // pacing, so that the bytes arrive one by one
    }
  }
  // Reads with recv(), bounded by SO_RCVTIMEO (Asio's blocking read would wait on).
  std::string read(std::size_t size) {
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
  // True if the balancer closed the connection (end of stream or reset) before any byte came.
  bool closed_by_peer() {
    char byte = 0;
    const ssize_t n = ::recv(socket.native_handle(), &byte, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  asio::io_context io;
  tcp::socket socket;
};

std::shared_ptr<const ClientPhase> proxy_in(std::vector<std::string> trusted = {},
                                            std::chrono::milliseconds timeout = 3s) {
  std::vector<config::Network> blocks;
  for (const auto& t : trusted) blocks.push_back(*config::parse_network(t).network);
  return std::make_shared<const ProxyHeaderIn>(std::move(blocks), timeout);
}

TEST(Connection, RelaysThroughTheListenerWithNoPhaseConfigured) {
  // Verifies the plain course accept -> choose -> connect -> relay -> closed, and that the
  // worker frees the connection once it has closed.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}});
  Balancer balancer(fixture.route());
  {
    Client client(balancer.endpoint());
    client.send("hello");
    EXPECT_EQ(client.read(5), "hello");
  }
  EXPECT_TRUE(eventually([&] { return balancer.active() == 0; }));
  EXPECT_EQ(fixture.stats->connections.load(), 1U);
  EXPECT_EQ(fixture.stats->active.load(), 0);
}

TEST(Connection, ProxyV1InByteAtATimeThenV2OutCarriesTheDecodedClient) {
  // Verifies the PROXY client phase with a header that arrives one byte at a time, and the
  // node phase: the node receives a v2 header naming the client and destination from the
  // header in, then exactly the client's bytes (the header in is consumed, not relayed).
  test::ProxyBackend node;
  RouteFixture fixture({{"n1", node.address(), config::ProxyProtocol::v2}});
  Balancer balancer(fixture.route({proxy_in()}));
  Client client(balancer.endpoint());
  client.send_bytewise("PROXY TCP4 192.0.2.10 198.51.100.1 4242 443\r\n");
  client.send("hello");
  EXPECT_EQ(client.read(5), "hello");
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].valid);
  EXPECT_FALSE(seen[0].local);
  EXPECT_EQ(seen[0].source, tcp::endpoint(asio::ip::make_address("192.0.2.10"), 4242));
  EXPECT_EQ(seen[0].destination, tcp::endpoint(asio::ip::make_address("198.51.100.1"), 443));
  EXPECT_EQ(static_cast<std::uint8_t>(seen[0].header[12]), 0x21);  // v2, PROXY command
}

TEST(Connection, BytesSentWithALargestHeaderInAreRelayedWithoutAnotherEvent) {
  // Verifies that the client's bytes sent in one segment with the end of a PROXY header of the
  // largest size reach the node: the phase's peek is full (it saw no byte beyond the header)
  // and no new event announces the rest, so the relay must read it at once. The header's first
  // bytes go ahead, so that the phase has taken the first event before the rest arrives.
  test::ProxyBackend node;
  RouteFixture fixture({{"n1", node.address(), config::ProxyProtocol::v2}});
  Balancer balancer(fixture.route({proxy_in()}));
  std::string header("\r\n\r\n\0\r\nQUIT\n", 12);
  header += "\x21\x11";  // v2 PROXY, TCP over IPv4
  const std::size_t body = proxy::kMaxHeader - 16;
  header += static_cast<char>(body >> 8);
  header += static_cast<char>(body & 0xFF);
  header += std::string("\xC0\x00\x02\x0A" "\xC6\x33\x64\x01" "\x10\x92" "\x01\xBB", 12);
  const std::size_t padding = body - 12 - 3;  // a NOOP TLV fills the rest
  header += '\x04';
  header += static_cast<char>(padding >> 8);
  header += static_cast<char>(padding & 0xFF);
  header += std::string(padding, 'x');
  ASSERT_EQ(header.size(), proxy::kMaxHeader);
  Client client(balancer.endpoint());
  client.send(header.substr(0, 16));
  std::this_thread::sleep_for(20ms);  // pacing: the first part is peeked on its own
  client.send(header.substr(16) + "hello");
  EXPECT_EQ(client.read(5), "hello");
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].source, tcp::endpoint(asio::ip::make_address("192.0.2.10"), 4242));
}

TEST(Connection, BlockMadeWhileThePROXYHeaderIsAwaitedRefusesTheClientItNames) {
  // Verifies that a block made after the connection was accepted, while its PROXY header was
  // still awaited (the route has no block check: no block applied when it was made), refuses the
  // client the header then names: the node is never contacted and the refusal is counted as
  // `blocked`. A block of another client changes nothing for it.
  test::ProxyBackend node;
  RouteFixture fixture({{"n1", node.address(), config::ProxyProtocol::v2}});
  auto blocks = std::make_shared<BlockList>();
  auto route = std::make_shared<Route>(*fixture.route({proxy_in()}));
  route->blocks = blocks;
  Balancer balancer(route);
  auto block_of = [](const std::string& network) {
    return Block{*config::parse_network(network).network, "", BlockClock::now(), std::nullopt};
  };

  Client blocked(balancer.endpoint());
  Client other(balancer.endpoint());
  ASSERT_TRUE(eventually([&] { return fixture.stats->connections.load() == 2; }));
  blocks->publish(std::make_shared<const BlockSet>(std::vector<Block>{block_of("192.0.2.0/24")}));
  blocked.send("PROXY TCP4 192.0.2.10 198.51.100.1 4242 443\r\nhello");
  other.send("PROXY TCP4 198.51.100.7 198.51.100.1 4242 443\r\nhello");
  EXPECT_TRUE(blocked.closed_by_peer());
  EXPECT_EQ(other.read(5), "hello");
  EXPECT_EQ(fixture.rejected(RejectReason::blocked), 1U);
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_EQ(seen[0].source.address(), asio::ip::make_address("198.51.100.7"));
}

TEST(Connection, V2LocalInKeepsTheConnectionsOwnAddressesForTheV1HeaderOut) {
  // Verifies v2 LOCAL in (a health check of the proxy in front): the client stays the
  // connection's own peer, and the v1 header out names it and the listener's address.
  test::ProxyBackend node;
  RouteFixture fixture({{"n1", node.address(), config::ProxyProtocol::v1}});
  Balancer balancer(fixture.route({proxy_in()}));
  Client client(balancer.endpoint());
  const auto local = proxy::local_header(proxy::Version::v2);
  client.send(std::string(local) + "hi");
  EXPECT_EQ(client.read(2), "hi");
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].valid);
  EXPECT_EQ(seen[0].source, client.socket.local_endpoint());
  EXPECT_EQ(seen[0].destination, balancer.endpoint());
  EXPECT_EQ(seen[0].header.rfind("PROXY TCP4 127.0.0.1 127.0.0.1 ", 0), 0U) << seen[0].header;
}

TEST(Connection, AnUntrustedSourceIsClosedAtOnceWithoutContactingANode) {
  // Verifies trusted_proxies: a source outside every block is refused before it sends a byte
  // (well before proxy_timeout), counted as `proxy`, and no node is contacted.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}});
  Balancer balancer(fixture.route({proxy_in({"10.0.0.0/8", "::1"}, 10s)}));
  Client client(balancer.endpoint());
  const auto started = Clock::now();
  EXPECT_TRUE(client.closed_by_peer());
  EXPECT_LT(Clock::now() - started, 3s);
  EXPECT_TRUE(eventually([&] { return fixture.rejected(RejectReason::proxy) == 1; }));
  EXPECT_EQ(node.accepted(), 0);
}

TEST(Connection, MalformedAndOversizedHeadersAreClosedAtOnceAndCounted) {
  // Verifies that a client that is not a proxy (an HTTP request) and a v1 line longer than 107
  // bytes are refused at once (not at the 10 s timeout), counted, without contacting a node.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}});
  Balancer balancer(fixture.route({proxy_in({"127.0.0.0/8"}, 10s)}));
  const auto started = Clock::now();
  {
    Client client(balancer.endpoint());
    client.send("GET / HTTP/1.0\r\n\r\n");
    EXPECT_TRUE(client.closed_by_peer());
  }
  {
    Client client(balancer.endpoint());
    client.send("PROXY TCP4 " + std::string(200, '1'));
    EXPECT_TRUE(client.closed_by_peer());
  }
  EXPECT_LT(Clock::now() - started, 5s);
  EXPECT_TRUE(eventually([&] { return fixture.rejected(RejectReason::proxy) == 2; }));
  EXPECT_EQ(node.accepted(), 0);
}

TEST(Connection, ALateHeaderIsClosedAtProxyTimeout) {
  // Verifies the client phase's deadline: half a header and then silence is closed at
  // proxy_timeout, not before, counted, and no node is contacted.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}});
  Balancer balancer(fixture.route({proxy_in({}, 300ms)}));
  Client client(balancer.endpoint());
  const auto started = Clock::now();
  client.send("PROX");
  EXPECT_TRUE(client.closed_by_peer());
  const auto elapsed = Clock::now() - started;
  EXPECT_GE(elapsed, 290ms);
  EXPECT_LT(elapsed, 4s);
  EXPECT_TRUE(eventually([&] { return fixture.rejected(RejectReason::proxy) == 1; }));
  EXPECT_EQ(node.accepted(), 0);
}

TEST(Connection, AClientThatShutsItsSideWithinTheHeaderIsClosedAtOnce) {
  // Verifies that half a header followed by the client's FIN is refused at once (the FIN may
  // come after the bytes, when a peek still returns them), not at proxy_timeout; counted, and
  // no node is contacted.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}});
  Balancer balancer(fixture.route({proxy_in({}, 10s)}));
  Client client(balancer.endpoint());
  const auto started = Clock::now();
  client.send("PROXY TCP4 203.0");
  std::this_thread::sleep_for(20ms);  // pacing: the FIN comes as an event of its own
  client.socket.shutdown(tcp::socket::shutdown_send);
  EXPECT_TRUE(client.closed_by_peer());
  EXPECT_LT(Clock::now() - started, 4s);
  EXPECT_TRUE(eventually([&] { return fixture.rejected(RejectReason::proxy) == 1; }));
  EXPECT_EQ(node.accepted(), 0);
}

TEST(Connection, FallsOverFromAV2NodeThatClosesToAnOffNodeWithoutAHeader) {
  // Verifies that a fall-over after the node phase starts over for the next node: the first
  // node (v2) got its header and closed; the second ("off") receives no header, only the
  // client's bytes (the echo proves it: a header would come back too).
  test::Backend failing("a", test::BackendMode::close_at_once);
  test::Backend spare("b");
  RouteFixture fixture({{"a", failing.address(), config::ProxyProtocol::v2, "", 1},
                        {"b", spare.address(), config::ProxyProtocol::off, "", 2}});
  Balancer balancer(fixture.route());
  Client client(balancer.endpoint());
  // The client waits: a byte relayed to the first node would rule out a fall-over.
  ASSERT_TRUE(eventually([&] { return spare.accepted() == 1; }));
  client.send("ping");
  EXPECT_EQ(client.read(4), "ping");
  EXPECT_EQ(failing.accepted(), 1);
}

TEST(Connection, AnIdleConnectionIsClosedAfterItsTimeoutAndActivityPostponesIt) {
  // Verifies the idle-timeout wheel where a timeout spans several turns of the wheel (12 ticks
  // of 20 ms on 4 slots): a silent connection is closed after its timeout and not before, and a
  // connection that keeps moving bytes stays open.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}}, "round_robin", 240ms);
  Balancer balancer(fixture.route(), 20ms, 4);
  Client silent(balancer.endpoint());
  Client busy(balancer.endpoint());
  const auto started = Clock::now();
  std::atomic<bool> silent_closed{false};
  std::atomic<bool> watched{false};
  Clock::duration elapsed{};
  std::thread watcher([&] {
    silent_closed = silent.closed_by_peer();
    elapsed = Clock::now() - started;
    watched = true;
  });
  // Keep `busy` moving bytes every 40 ms until the silent one is closed (bounded).
  for (int i = 0; i < 100 && !watched; ++i) {
    busy.send("x");
    EXPECT_EQ(busy.read(1), "x");
    std::this_thread::sleep_for(40ms);  // pacing of the busy client's traffic
  }
  watcher.join();
  EXPECT_TRUE(silent_closed);
  EXPECT_GE(elapsed, 240ms);
  busy.send("y");
  EXPECT_EQ(busy.read(1), "y") << "a connection with activity was closed as idle";
}

TEST(Connection, CloseConnectionsReachesEveryPhase) {
  // Verifies the one close path from outside (node offline, end of a stop): a relaying
  // connection and one waiting in a client phase are both closed and counted.
  test::Backend node("n1");
  RouteFixture fixture({{"n1", node.address()}});
  Balancer relaying_balancer(fixture.route());
  Client relaying(relaying_balancer.endpoint());
  relaying.send("a");
  EXPECT_EQ(relaying.read(1), "a");
  const auto closed = on_worker(relaying_balancer.worker(), [&] {
    return relaying_balancer.worker().close_connections([](const Connection&) { return true; });
  });
  EXPECT_EQ(closed, 1U);
  EXPECT_TRUE(relaying.closed_by_peer());

  RouteFixture waiting_fixture({{"n1", node.address()}});
  Balancer waiting_balancer(waiting_fixture.route({proxy_in({}, 10s)}));
  Client waiting(waiting_balancer.endpoint());
  ASSERT_TRUE(eventually([&] { return waiting_balancer.active() == 1; }));
  const auto closed_waiting = on_worker(waiting_balancer.worker(), [&] {
    return waiting_balancer.worker().close_connections([](const Connection& c) {
      return c.phase() == Connection::Phase::client;
    });
  });
  EXPECT_EQ(closed_waiting, 1U);
  EXPECT_TRUE(waiting.closed_by_peer());
  EXPECT_TRUE(eventually([&] { return waiting_balancer.active() == 0; }));
}

}  // namespace
}  // namespace pb::net
