// The fault suite, part 1: faults under load (reload storm, node flapping, descriptor
// exhaustion, stalled readers with a flooding node, a flooded admin socket). The real daemon,
// real nodes on loopback, bounded loads; observed only through sockets, the admin API, metrics
// and /proc.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "fault/fault_common.hpp"
#include "support/backend.hpp"
#include "support/fault_node.hpp"

namespace pb::test::fault {
namespace {

constexpr std::array<const char*, 6> kAlgorithms{"round_robin",   "random",   "least_connections",
                                                 "least_latency", "min_load", "hash"};

TEST(Fault, ReloadStormUnderChurnDropsNothing) {
  // Verifies that 50 reloads, each adding, removing or reweighting nodes and changing the
  // algorithm, under a churn load, fail no client connection, and that afterwards no
  // connection is left open in the balancer or on a node.
  std::vector<std::unique_ptr<FaultNode>> nodes;
  for (const char* name : {"n0", "n1", "n2", "n3"}) nodes.push_back(std::make_unique<FaultNode>(name));
  // Reload i: node k is in when bit k of i is set, and node i % 4 always (never empty).
  const auto config_for = [&](int i) {
    std::vector<NodeSpec> specs;
    for (int k = 0; k < 4; ++k) {
      if (((i >> k) & 1) != 0 || k == i % 4) {
        specs.push_back({nodes[static_cast<std::size_t>(k)]->name(),
                         nodes[static_cast<std::size_t>(k)]->address(), 1 + (i * 7 + k * 3) % 9});
      }
    }
    return config_text(specs, kAlgorithms[static_cast<std::size_t>(i) % kAlgorithms.size()],
                       "threads = 2\n");
  };
  TempDir dir;
  const auto file = dir.write("pb.toml", config_for(0));
  Balancer balancer({"--config", file.string()});
  const auto socket = dir.path() / "state" / "admin.sock";
  ASSERT_TRUE(admin_ready(socket)) << balancer.process().output();

  ChurnLoad load(balancer.address("l"), churn_options(4, in(240s)));
  for (int i = 1; i <= 50; ++i) {
    dir.write("pb.toml", config_for(i));
    const HttpAnswer answer = admin_request(socket, "POST", "/v1/reload", "", in(10s));
    ASSERT_EQ(answer.status, 200) << "reload " << i << ": " << answer.body;
    ASSERT_NE(answer.body.find("\"ok\":true"), std::string::npos) << answer.body;
    // Let some connections run on each configuration.
    ASSERT_TRUE(load.wait_completed(10, in(20s))) << "load stalled after reload " << i;
  }
  load.stop();
  EXPECT_GT(load.completed(), 500U);
  EXPECT_EQ(load.failed(), 0U) << load.failures();
  EXPECT_EQ(load.broken(), 0U) << load.failures();
  std::set<std::string> used;
  for (const auto& [node, n] : load.served_by_node()) used.insert(node);
  EXPECT_EQ(used.size(), 4U);

  // Nothing stuck: the balancer and every node have closed all connections.
  EXPECT_TRUE(eventually([&] { return admin_active_sessions(socket) == 0L; }, in(10s)))
      << admin_request(socket, "GET", "/v1/status").body;
  EXPECT_TRUE(eventually(
      [&] {
        return std::all_of(nodes.begin(), nodes.end(),
                           [](const auto& n) { return n->open_connections() == 0; });
      },
      in(10s)));
}

TEST(Fault, NodeFlappingUnderLoadNeverFailsAConnect) {
  // Verifies that while two of three nodes are killed and brought back in turn (their port
  // refusing connects and their connections reset), every client connection reaches a node:
  // clients see at most a delay. Connections cut by a node's death are that node's own.
  FaultNode a("a");
  FaultNode b("b");
  FaultNode c("c");
  TempDir dir;
  const auto file = dir.write(
      "pb.toml", config_text({{"a", a.address()}, {"b", b.address()}, {"c", c.address()}},
                             "round_robin", "threads = 2\n",
                             "connect_timeout = \"1s\"\nretry_interval = \"100ms\"\n"));
  Balancer balancer({"--config", file.string()});
  ChurnLoad load(balancer.address("l"), churn_options(4, in(240s)));
  for (int round = 0; round < 10; ++round) {
    FaultNode& victim = round % 2 == 0 ? a : b;
    victim.kill();
    ASSERT_TRUE(load.wait_completed(40, in(20s))) << "load stalled with " << victim.name() << " dead";
    victim.revive();
    ASSERT_TRUE(load.wait_completed(40, in(20s))) << "load stalled after " << victim.name() << " revived";
  }
  // Both flapping nodes take traffic again once back (the prober finds them).
  const auto count = [](const std::map<std::string, std::uint64_t>& m, const std::string& key) {
    const auto it = m.find(key);
    return it == m.end() ? std::uint64_t{0} : it->second;
  };
  const auto served_before = load.served_by_node();
  ASSERT_TRUE(eventually(
      [&] {
        const auto now = load.served_by_node();
        return count(now, "a") > count(served_before, "a") && count(now, "b") > count(served_before, "b");
      },
      in(10s)));
  load.stop();
  EXPECT_EQ(load.failed(), 0U) << load.failures();
  const auto broken = load.broken_by_node();
  EXPECT_EQ(broken.count("c"), 0U) << "connections cut on the node that never died";
  EXPECT_EQ(broken.count("?"), 0U);
  EXPECT_GT(count(load.served_by_node(), "c"), 0U);
}

TEST(Fault, DescriptorExhaustionPausesAcceptingAndRecovers) {
  // Verifies that with a low descriptor limit and more clients than fit: connections already
  // open keep flowing, the balancer does not spin, and once the clients go every new
  // connection is served again.
  Backend node("n", BackendMode::greet_echo);
  TempDir dir;
  const auto file = dir.write("pb.toml", config_text({{"n", node.address()}}, "round_robin",
                                                     "threads = 1\n"));
  Balancer balancer({"--config", file.string()}, ProcessOptions{.max_open_files = 96, .working_dir = {}});
  std::vector<Client> existing;
  for (int i = 0; i < 4; ++i) {
    existing.emplace_back(balancer.address("l"));
    ASSERT_EQ(existing.back().recv_line(in(5s)), "n");
  }
  // Far more clients than descriptors: some get a session, the rest wait in the backlog or
  // are closed.
  std::vector<Client> flood;
  for (int i = 0; i < 150; ++i) flood.emplace_back(balancer.address("l"), 2s);
  ASSERT_TRUE(balancer.process().wait_for(std::regex("pausing accepts|out of descriptors"), in(10s)))
      << balancer.process().output();
  for (auto& client : existing) {
    ASSERT_TRUE(client.send_all("still\n"));
    EXPECT_EQ(client.recv_exact(6, in(5s)), "still\n");
  }
  const double cpu_before = cpu_seconds_of(balancer.process().pid());
  std::this_thread::sleep_for(1s);  // the observation window for CPU use
  EXPECT_LT(cpu_seconds_of(balancer.process().pid()) - cpu_before, 0.3) << "spinning";

  flood.clear();
  // Full recovery: 50 new connections in a row, each served.
  int served = 0;
  ASSERT_TRUE(eventually(
      [&] {
        Client probe(balancer.address("l"), 2s);
        return probe.connected() && probe.recv_line(in(2s)) == "n";
      },
      in(15s)));
  for (int i = 0; i < 50; ++i) {
    Client again(balancer.address("l"), 2s);
    served += again.connected() && again.recv_line(in(5s)) == "n" && again.send_all("x\n") &&
              again.recv_exact(2, in(5s)) == "x\n";
  }
  EXPECT_EQ(served, 50);
  for (auto& client : existing) {
    ASSERT_TRUE(client.send_all("after\n"));
    EXPECT_EQ(client.recv_exact(6, in(5s)), "after\n");
  }
}

TEST(Fault, StalledReadersOfAFloodingNodeKeepMemoryFlat) {
  // Verifies that a node sending without end to 100 clients that never read does not make the
  // balancer buffer without bound: once the flow stops (back-pressure), its RSS stays flat, and
  // the growth over the start is bounded per connection.
  FaultNode flood("f", FaultNodeMode::flood);
  TempDir dir;
  const auto file = dir.write("pb.toml", config_text({{"f", flood.address()}}, "round_robin",
                                                     "threads = 2\n"));
  Balancer balancer({"--config", file.string()});
  const pid_t pid = balancer.process().pid();
  {
    // Warm up: a few connections that read a little, so pools and caches exist.
    for (int i = 0; i < 5; ++i) {
      Client reader(balancer.address("l"));
      ASSERT_EQ(reader.recv_exact(256 * 1024, in(10s)).size(), 256U * 1024U);
    }
  }
  const std::uint64_t base = rss_kib(pid);
  constexpr int kStalled = 100;
  std::vector<Client> stalled;
  for (int i = 0; i < kStalled; ++i) {
    stalled.emplace_back(balancer.address("l"));
    ASSERT_TRUE(stalled.back().connected());
  }
  // Back-pressure reached: the node can send no more (over one second).
  ASSERT_TRUE(eventually(
      [&] {
        const std::uint64_t before = flood.bytes_sent();
        std::this_thread::sleep_for(1s);  // the observation window for the flow
        return flood.bytes_sent() == before && flood.open_connections() == kStalled;
      },
      in(30s)))
      << "still flowing after 30 s: " << flood.bytes_sent() << " bytes";
  const std::uint64_t held = rss_kib(pid);
  std::this_thread::sleep_for(3s);  // the observation window for memory
  const std::uint64_t later = rss_kib(pid);
  const std::uint64_t sent_mib = flood.bytes_sent() >> 20;
  std::cout << "[ stats    ] RSS " << base << " KiB at start, " << held << " KiB with " << kStalled
            << " stalled readers, " << later << " KiB 3 s later; the node sent " << sent_mib
            << " MiB\n";
  EXPECT_LT(later, held + 2048) << "RSS grows while nothing flows";
  EXPECT_LT((held > base ? held - base : 0) / kStalled, 512U) << "KiB per stalled connection";
}

// Opens a connection to the admin socket (or -1).
int admin_connect(const std::filesystem::path& socket) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) return fd;
  if (fd >= 0) ::close(fd);
  return -1;
}

TEST(Fault, AdminSocketFloodLeavesControlAndWorkersResponsive) {
  // Verifies that while the admin socket is flooded with garbage, oversized headers, idle and
  // byte-by-byte slow clients, GET /v1/status keeps answering within 5 s and the workers serve
  // a churn load without one failed connection.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  TempDir dir;
  const auto file = dir.write("pb.toml", config_text({{"a", a.address()}, {"b", b.address()}},
                                                     "least_connections", "threads = 2\n"));
  Balancer balancer({"--config", file.string()});
  const auto socket = dir.path() / "state" / "admin.sock";
  ASSERT_TRUE(admin_ready(socket));
  ChurnLoad load(balancer.address("l"), churn_options(2, in(120s)));

  std::atomic<bool> stop{false};
  std::atomic<int> garbage_sent{0};
  std::vector<std::thread> attackers;
  // Garbage: random bytes, then close; and headers over the 8 KiB limit. About 50 connections
  // a second each: the control thread of this (ASan, Debug) build takes about 1.6 ms of CPU to
  // refuse one, and an unthrottled flood by the socket's owner only queues the status requests
  // behind it (docs/reliability.md).
  for (int t = 0; t < 2; ++t) {
    attackers.emplace_back([&, t] {
      for (unsigned i = 0; !stop && i < 2000; ++i) {
        std::this_thread::sleep_for(20ms);  // the flood's pace
        const int fd = admin_connect(socket);
        if (fd < 0) continue;
        const std::string junk = t == 0 ? random_bytes(1 + i % 4096, i)
                                        : "GET /v1/status HTTP/1.1\r\nX-Big: " +
                                              std::string(20000 + i, 'x') + "\r\n\r\n";
        (void)::send(fd, junk.data(), junk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        ::close(fd);
        ++garbage_sent;
      }
    });
  }
  // Slow clients: 100 connections that send a request one byte every 100 ms, and 100 idle.
  std::vector<int> slow;
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) {
    slow.push_back(admin_connect(socket));
    idle.push_back(admin_connect(socket));
  }
  attackers.emplace_back([&] {
    const std::string request = "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n";
    for (std::size_t i = 0; !stop && i < request.size(); ++i) {
      for (int fd : slow) {
        if (fd >= 0) (void)::send(fd, &request[i], 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      std::this_thread::sleep_for(100ms);  // the pace of a slow client
    }
  });

  // The control thread answers throughout.
  std::chrono::milliseconds slowest{0};
  int answered = 0;
  for (auto end = in(6s); std::chrono::steady_clock::now() < end;) {
    const auto start = std::chrono::steady_clock::now();
    const HttpAnswer answer = admin_request(socket, "GET", "/v1/status", "", in(5s));
    slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - start));
    EXPECT_EQ(answer.status, 200) << "status request " << answered;
    if (answer.status == 200) ++answered;
    std::this_thread::sleep_for(100ms);  // one status request every 100 ms
  }
  stop = true;
  for (auto& thread : attackers) thread.join();
  for (int fd : slow) if (fd >= 0) ::close(fd);
  for (int fd : idle) if (fd >= 0) ::close(fd);
  load.stop();
  std::cout << "[ stats    ] " << answered << " status answers, slowest " << slowest.count()
            << " ms, " << garbage_sent << " garbage connections, " << load.completed()
            << " forwarded connections\n";
  EXPECT_GT(garbage_sent.load(), 100);
  EXPECT_GT(load.completed(), 100U);
  EXPECT_EQ(load.failed(), 0U) << load.failures();
  EXPECT_EQ(load.broken(), 0U) << load.failures();
  EXPECT_TRUE(balancer.process().running());
  EXPECT_EQ(admin_request(socket, "GET", "/v1/status").status, 200);
}

}  // namespace
}  // namespace pb::test::fault
