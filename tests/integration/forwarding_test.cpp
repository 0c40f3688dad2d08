// End-to-end tests of the forwarding core: the real protobalance binary between real clients and
// real backends, all on loopback.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <fstream>
#include <future>
#include <thread>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"

namespace pb::test {
namespace {

std::vector<std::string> quick(const std::string& listen, const std::vector<std::string>& nodes,
                               const std::string& threads = "2") {
  std::vector<std::string> args{"--listen", listen, "--threads", threads};
  for (const auto& node : nodes) {
    args.push_back("--node");
    args.push_back(node);
  }
  return args;
}

// CPU seconds (user + system) a process has used, from /proc/PID/stat.
double cpu_seconds(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string content((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(content.substr(content.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

TEST(Forwarding, EchoesRandomPayloadsByteForByte) {
  // Verifies that payloads of many sizes come back through the balancer exactly as sent.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  for (std::size_t size : {1UL, 100UL, 4096UL, 65536UL, 65537UL, 1000000UL}) {
    Client client(balancer.address());
    ASSERT_TRUE(client.connected()) << client.error();
    const std::string payload = random_bytes(size, static_cast<unsigned>(size));
    auto reader = std::async(std::launch::async, [&] { return client.recv_exact(size); });
    ASSERT_TRUE(client.send_all(payload));
    EXPECT_EQ(reader.get(), payload) << "size " << size;
  }
}

TEST(Forwarding, ClientHalfCloseStillGetsTheReply) {
  // Verifies that a client that shuts down its write side still receives the node's reply and
  // then an orderly end of stream.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  Client client(balancer.address());
  ASSERT_TRUE(client.connected());
  ASSERT_TRUE(client.send_all("request body"));
  client.shutdown_write();
  PeerClose how = PeerClose::timeout;
  EXPECT_EQ(client.recv_all(in(5s), &how), "request body");
  EXPECT_EQ(how, PeerClose::eof);
}

TEST(Forwarding, NodeHalfCloseStillReceives) {
  // Verifies that after the node shuts down its write side (the client sees EOF), bytes the
  // client sends afterwards still reach the node.
  Backend node("n1", BackendMode::greet_then_fin);
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  Client client(balancer.address());
  ASSERT_TRUE(client.connected());
  PeerClose how = PeerClose::timeout;
  EXPECT_EQ(client.recv_all(in(5s), &how), "n1\n");
  ASSERT_EQ(how, PeerClose::eof);
  ASSERT_TRUE(client.send_all("after the node's FIN"));
  client.shutdown_write();
  const auto deadline = in(5s);
  while (node.received() != "after the node's FIN" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);  // polling the backend's record, bounded by the deadline
  }
  EXPECT_EQ(node.received(), "after the node's FIN");
}

TEST(Forwarding, WithoutHalfCloseTheNodesEndClosesTheClientConnection) {
  // Verifies [[cluster]] half_close = false: after the node's greeting and FIN, the client gets
  // the greeting and the end of stream, and the balancer closes the node's connection without
  // waiting for the client (which keeps its socket open): what the client sends afterwards
  // reaches no node.
  Backend node("n1", BackendMode::greet_then_fin);
  TempDir dir;
  auto file = dir.write("pb.toml", R"(
[service]
threads = 1
state_dir = "var"
[[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
half_close = false
[[cluster.node]]
name = "n1"
address = ")" + node.address() + R"("
)");
  Balancer balancer({"--config", file.string()});
  Client client(balancer.address("l"));
  ASSERT_TRUE(client.connected());
  PeerClose how = PeerClose::timeout;
  EXPECT_EQ(client.recv_all(in(5s), &how), "n1\n");
  ASSERT_EQ(how, PeerClose::eof);
  ASSERT_TRUE(
      eventually([&] { return node.accepted() == 1 && node.open_connections() == 0; }, in(5s)))
      << "the node's connection is still open";
  client.send_all("after the node's FIN");  // may fail: the balancer closed this connection
  EXPECT_EQ(node.received(), "");
  EXPECT_EQ(node.accepted(), 1);
}

TEST(Forwarding, NodeThatSpeaksFirst) {
  // Verifies that a greeting sent by the node before the client says anything is relayed.
  Backend node("banner", BackendMode::greet_echo);
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  Client client(balancer.address());
  ASSERT_TRUE(client.connected());
  EXPECT_EQ(client.recv_line(), "banner");
  ASSERT_TRUE(client.send_all("ping"));
  EXPECT_EQ(client.recv_exact(4), "ping");
}

TEST(Forwarding, TwentyFourMebibytesEachWayWithSlowReader) {
  // Verifies that 24 MiB in each direction arrive intact (SHA-256) while the client reads
  // slowly, so that the relay must wait for writability without losing bytes.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  Client client(balancer.address());
  ASSERT_TRUE(client.connected());
  constexpr std::size_t kSize = 24 * 1024 * 1024;
  const std::string payload = random_bytes(kSize, 24);
  auto reader = std::async(std::launch::async, [&] {
    std::string got;
    while (got.size() < kSize) {
      std::string chunk = client.recv_exact(std::min<std::size_t>(256 * 1024, kSize - got.size()), in(30s));
      if (chunk.empty()) break;
      got += chunk;
      if (got.size() < 4 * 1024 * 1024) std::this_thread::sleep_for(2ms);  // a slow start
    }
    return got;
  });
  ASSERT_TRUE(client.send_all(payload, in(60s)));
  const std::string got = reader.get();
  EXPECT_EQ(got.size(), kSize);
  EXPECT_EQ(sha256_hex(got), sha256_hex(payload));
}

TEST(Forwarding, AStalledBulkReaderDoesNotHoldUpOtherConnections) {
  // Verifies that a client which stops reading in the middle of a bulk transfer (the relay is
  // splicing towards it and its socket is full) never blocks the worker: on the only worker
  // thread, another client is served meanwhile.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}, "1"));
  Client stalled(balancer.address());
  ASSERT_TRUE(stalled.connected());
  // The client never reads. The node echoes, so once the kernel buffers between the node and
  // the client are full the relay waits on the client's full socket.
  const std::string payload = random_bytes(48 * 1024 * 1024, 7);
  auto sender = std::async(std::launch::async, [&] { return stalled.send_all(payload, in(4s)); });
  std::this_thread::sleep_for(500ms);  // ample for the buffers to fill on loopback
  Client other(balancer.address());
  ASSERT_TRUE(other.connected());
  ASSERT_TRUE(other.send_all("ping", in(2s)));
  EXPECT_EQ(other.recv_exact(4, in(2s)), "ping");
  sender.wait();  // stalled until its deadline, or through if the node buffered it all
}

TEST(Forwarding, SixHundredConcurrentConnections) {
  // Verifies that 650 connections held open at the same time all relay their own bytes.
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &limit);
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  constexpr int kConnections = 650;
  std::vector<Client> clients;
  clients.reserve(kConnections);
  for (int i = 0; i < kConnections; ++i) {
    clients.emplace_back(balancer.address());
    ASSERT_TRUE(clients.back().connected()) << i << ": " << clients.back().error();
  }
  for (int i = 0; i < kConnections; ++i) {
    ASSERT_TRUE(clients[static_cast<std::size_t>(i)].send_all("conn " + std::to_string(i) + "\n"));
  }
  for (int i = 0; i < kConnections; ++i) {
    EXPECT_EQ(clients[static_cast<std::size_t>(i)].recv_line(), "conn " + std::to_string(i));
  }
  EXPECT_EQ(node.open_connections(), kConnections);
}

TEST(Forwarding, IdleTimeoutClosesSilentConnections) {
  // Verifies that a connection with no traffic either way is closed after idle_timeout, and
  // that traffic keeps a connection alive past it.
  Backend node("n1");
  TempDir dir;
  auto file = dir.write("pb.toml", R"(
[service]
threads = 1
state_dir = "var"
[[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
idle_timeout = "400ms"
[[cluster.node]]
name = "n1"
address = ")" + node.address() + R"("
)");
  Balancer balancer({"--config", file.string()});
  Client busy(balancer.address("l"));
  Client idle(balancer.address("l"));
  ASSERT_TRUE(busy.connected());
  ASSERT_TRUE(idle.connected());
  const auto start = std::chrono::steady_clock::now();
  // Keep `busy` talking every 100 ms for 1.2 s, three idle timeouts.
  for (int i = 0; i < 12; ++i) {
    ASSERT_TRUE(busy.send_all("x"));
    ASSERT_EQ(busy.recv_exact(1, in(2s)), "x") << "busy connection closed at round " << i;
    std::this_thread::sleep_for(100ms);  // the traffic pattern under test
  }
  EXPECT_EQ(idle.wait_closed(in(5s)), PeerClose::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 400ms);
}

TEST(Forwarding, RefusedNodeFallsOverToTheNext) {
  // Verifies that connections round-robined onto a node that refuses are served by the other
  // node, transparently.
  Backend good("good", BackendMode::greet_echo);
  Balancer balancer(quick("127.0.0.1:0", {closed_port_address(), good.address()}));
  for (int i = 0; i < 6; ++i) {
    Client client(balancer.address());
    ASSERT_TRUE(client.connected());
    EXPECT_EQ(client.recv_line(in(5s)), "good") << "connection " << i;
  }
  EXPECT_EQ(good.accepted(), 6);
}

TEST(Forwarding, ConnectTimeoutFallsOverToTheNext) {
  // Verifies that a node whose connects hang is given up after connect_timeout and the client
  // is served by the next node after about that delay.
  BlackHole hole;
  Backend good("good", BackendMode::greet_echo);
  TempDir dir;
  auto file = dir.write("pb.toml", R"(
[service]
threads = 1
[[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
connect_timeout = "300ms"
[[cluster.node]]
name = "hole"
address = ")" + hole.address() + R"("
[[cluster.node]]
name = "good"
address = ")" + good.address() + R"("
)");
  Balancer balancer({"--config", file.string()});
  // Round robin starts somewhere; two connections make sure one is sent to the hole first.
  for (int i = 0; i < 2; ++i) {
    const auto start = std::chrono::steady_clock::now();
    Client client(balancer.address("l"));
    ASSERT_TRUE(client.connected());
    EXPECT_EQ(client.recv_line(in(5s)), "good");
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  }
}

TEST(Forwarding, AllNodesDownClosesClientPromptly) {
  // Verifies that when no node answers the client is closed within a second and the balancer
  // keeps running and serving once a node is back.
  const std::string dead = closed_port_address();
  Balancer balancer(quick("127.0.0.1:0", {dead}));
  for (int i = 0; i < 3; ++i) {
    Client client(balancer.address());
    ASSERT_TRUE(client.connected());
    const auto start = std::chrono::steady_clock::now();
    EXPECT_NE(client.wait_closed(in(5s)), PeerClose::timeout);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
  }
  EXPECT_TRUE(balancer.process().running());
}

TEST(Forwarding, SigtermRefusesNewConnectionsAndLetsOpenOnesFinish) {
  // Verifies the graceful stop: after SIGTERM new connects are refused, an open connection
  // keeps working, and the process exits 0 once it closes.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  Client open(balancer.address());
  ASSERT_TRUE(open.connected());
  ASSERT_TRUE(open.send_all("before"));
  ASSERT_EQ(open.recv_exact(6), "before");
  balancer.process().signal(SIGTERM);
  ASSERT_TRUE(balancer.process().wait_for(std::regex("SIGTERM: stopping"), in(5s)));
  bool refused = false;
  for (auto deadline = in(5s); std::chrono::steady_clock::now() < deadline;) {
    Client late(balancer.address(), 1s);
    if (!late.connected()) {
      refused = true;
      break;
    }
    std::this_thread::sleep_for(10ms);  // the listener is being closed on each worker
  }
  EXPECT_TRUE(refused);
  ASSERT_TRUE(open.send_all("after"));
  EXPECT_EQ(open.recv_exact(5), "after");
  EXPECT_TRUE(balancer.process().running());
  open.close();
  EXPECT_EQ(balancer.process().wait_exit(in(5s)), 0);
}

TEST(Forwarding, ShutdownTimeoutClosesRemainingConnections) {
  // Verifies that connections still open at shutdown_timeout are closed and the process exits
  // 0; and that a second signal is not needed for it.
  Backend node("n1");
  TempDir dir;
  auto file = dir.write("pb.toml", R"(
[service]
threads = 1
shutdown_timeout = "300ms"
[[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n1"
address = ")" + node.address() + R"("
)");
  Balancer balancer({"--config", file.string()});
  Client held(balancer.address("l"));
  ASSERT_TRUE(held.connected());
  ASSERT_TRUE(held.send_all("x"));
  ASSERT_EQ(held.recv_exact(1), "x");
  const auto start = std::chrono::steady_clock::now();
  balancer.process().signal(SIGTERM);
  EXPECT_EQ(held.wait_closed(in(5s)), PeerClose::eof);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
  EXPECT_EQ(balancer.process().wait_exit(in(5s)), 0);
}

TEST(Forwarding, SecondSignalExitsAtOnce) {
  // Verifies that a second SIGTERM during the drain ends the process immediately.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}));
  Client held(balancer.address());
  ASSERT_TRUE(held.connected());
  ASSERT_TRUE(held.send_all("x"));
  ASSERT_EQ(held.recv_exact(1), "x");
  balancer.process().signal(SIGTERM);
  ASSERT_TRUE(balancer.process().wait_for(std::regex("stopping"), in(5s)));
  EXPECT_TRUE(balancer.process().running());  // drain waits up to 30 s for `held`
  balancer.process().signal(SIGTERM);
  EXPECT_EQ(balancer.process().wait_exit(in(3s)), 0);
}

TEST(Forwarding, Ipv6Loopback) {
  // Verifies listening on and forwarding to [::1].
  Backend node("v6", BackendMode::greet_echo, "::1");
  Balancer balancer(quick("[::1]:0", {node.address()}));
  ASSERT_EQ(balancer.address().substr(0, 5), "[::1]");
  Client client(balancer.address());
  ASSERT_TRUE(client.connected()) << client.error();
  EXPECT_EQ(client.recv_line(), "v6");
}

TEST(Forwarding, OutOfDescriptorsPausesAcceptWithoutSpinning) {
  // Verifies that with few descriptors and more clients than fit, the balancer does not spin,
  // keeps relaying for connections it has, and accepts again when descriptors free up.
  Backend node("n1");
  Balancer balancer(quick("127.0.0.1:0", {node.address()}, "1"),
                    ProcessOptions{.max_open_files = 64, .working_dir = {}});
  std::vector<Client> clients;
  for (int i = 0; i < 60; ++i) clients.emplace_back(balancer.address(), 2s);
  // The first connections got a node; make sure one of them still relays.
  ASSERT_TRUE(clients.front().send_all("alive"));
  EXPECT_EQ(clients.front().recv_exact(5, in(5s)), "alive");
  const double cpu_before = cpu_seconds(balancer.process().pid());
  std::this_thread::sleep_for(1s);  // the observation window for CPU use
  const double cpu_used = cpu_seconds(balancer.process().pid()) - cpu_before;
  EXPECT_LT(cpu_used, 0.3) << "accept loop spinning";
  // Depending on how many descriptors are left, either accept itself fails (and pauses) or the
  // connection to the node cannot be opened (and the client is closed): both are reported.
  ASSERT_TRUE(balancer.process().wait_for(std::regex("pausing accepts|out of descriptors"), in(5s)))
      << balancer.process().output();
  clients.clear();  // frees descriptors on the balancer's side too
  bool served = false;
  for (auto deadline = in(10s); !served && std::chrono::steady_clock::now() < deadline;) {
    Client again(balancer.address(), 2s);
    served = again.connected() && again.send_all("again") && again.recv_exact(5, in(2s)) == "again";
  }
  EXPECT_TRUE(served);
}

TEST(Forwarding, CheckReportsConfigErrorsWithPositions) {
  // Verifies that --check prints FILE:LINE:COL for every error and exits 2, and exits 0 with
  // "ok" for a good file.
  TempDir dir;
  auto bad = dir.write("bad.toml", "[service]\nthreads = \"two\"\n\n[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:99999\"\ncluster = \"nope\"\n");
  auto result = run({binary("protobalance"), "--check", "--config", bad.string()});
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_NE(result.output.find(bad.string() + ":2:"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(bad.string() + ":6:"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find(bad.string() + ":7:"), std::string::npos) << result.output;

  auto good = dir.write("good.toml", "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\ncluster = \"c\"\n[[cluster]]\nname = \"c\"\n[[cluster.node]]\nname = \"a\"\naddress = \"127.0.0.1:9\"\n");
  result = run({binary("protobalance"), "--check", "--config", good.string()});
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("ok"), std::string::npos);
}

TEST(Forwarding, CommandLineErrors) {
  // Verifies exit code 2 and a message for missing or contradictory options and bad addresses.
  auto none = run({binary("protobalance")});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_NE(none.output.find("--config"), std::string::npos);
  auto bad_node = run({binary("protobalance"), "--listen", "127.0.0.1:0", "--node", "nowhere"});
  EXPECT_EQ(bad_node.exit_code, 2);
  EXPECT_NE(bad_node.output.find("nowhere"), std::string::npos) << bad_node.output;
  auto missing = run({binary("protobalance"), "--config", "/nonexistent/pb.toml"});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.output.find("/nonexistent/pb.toml"), std::string::npos);
  auto version = run({binary("protobalance"), "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("protobalance "), std::string::npos);
}

TEST(Forwarding, ListenerAddressInUseIsAStartupError) {
  // Verifies that a listener address held by another program (without SO_REUSEPORT) stops
  // start-up with exit 1 and a message naming the listener.
  Backend occupier("occupier");
  auto result = run({binary("protobalance"), "--listen", occupier.address(), "--node", "127.0.0.1:9"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_NE(result.output.find("cannot listen on " + occupier.address()), std::string::npos)
      << result.output;
}

}  // namespace
}  // namespace pb::test
