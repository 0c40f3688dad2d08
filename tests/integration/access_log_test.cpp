// End-to-end test of the access log: the real balancer writes one line per finished connection.
#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::test {
namespace {

std::string read_all(const std::filesystem::path& file) {
  std::ifstream in(file);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Waits (at most 5 s) until `file` holds at least `lines` lines; returns its text.
std::string wait_lines(const std::filesystem::path& file, long lines) {
  std::string text;
  for (auto deadline = in(5s); std::chrono::steady_clock::now() < deadline;) {
    text = read_all(file);
    if (std::count(text.begin(), text.end(), '\n') >= lines) break;
    std::this_thread::sleep_for(20ms);  // the writer thread appends asynchronously
  }
  return text;
}

// One worker, the access log at state/access.log, listener "front" -> cluster "web" with the
// given [[cluster.node]] tables.
std::string config_with_nodes(const std::string& nodes) {
  return R"([service]
threads = 1
state_dir = "state"
[access_log]
enabled = true
path = "access.log"
[[listener]]
name = "front"
listen = "127.0.0.1:0"
cluster = "web"
[[cluster]]
name = "web"
)" + nodes;
}

TEST(AccessLog, OneLinePerFinishedConnectionWithNodeBytesAndFallOvers) {
  // Verifies that each finished connection is logged with its client, listener, cluster, the
  // node that served it, attempts and fall-overs, bytes each way and how it ended; and that a
  // client no node could take is logged as no_node.
  Backend good("good");
  const std::string dead = closed_port_address();
  TempDir dir;
  auto file = dir.write("pb.toml", config_with_nodes(R"([[cluster.node]]
name = "dead"
address = ")" + dead + R"("
fallover = "good"
[[cluster.node]]
name = "good"
address = ")" + good.address() + R"("
)"));
  Balancer balancer({"--config", file.string()});
  {
    // Round robin's first pick is `good` or `dead`; the second connection gets the other one,
    // so one of the two falls over from `dead` to `good`.
    for (int i = 0; i < 2; ++i) {
      Client client(balancer.address("front"), 5s, "127.0.0.7");
      ASSERT_TRUE(client.connected());
      ASSERT_TRUE(client.send_all("hello"));
      client.shutdown_write();
      EXPECT_EQ(client.recv_all(in(5s)), "hello");
    }
  }
  const auto log_file = dir.path() / "state" / "access.log";
  std::string log = wait_lines(log_file, 2);
  const std::regex line(
      "client=127\\.0\\.0\\.7:\\d+ listener=front cluster=web node=good attempts=(\\d) "
      "fallovers=(\\d) connect_ms=[0-9.]+ to_node=5 to_client=5 duration_ms=[0-9.]+ end=finished");
  int with_fallover = 0;
  int lines = 0;
  for (std::sregex_iterator it(log.begin(), log.end(), line), end; it != end; ++it) {
    ++lines;
    if ((*it)[2] == "1") {
      ++with_fallover;
      EXPECT_EQ((*it)[1], "2");
    }
  }
  EXPECT_EQ(lines, 2) << log;
  EXPECT_EQ(with_fallover, 1) << log;

  good.stop();
  {
    Client refused(balancer.address("front"), 5s, "127.0.0.8");
    ASSERT_TRUE(refused.connected());
    EXPECT_NE(refused.wait_closed(in(5s)), PeerClose::timeout) << balancer.process().output();
  }
  const std::regex rejected("client=127\\.0\\.0\\.8:\\d+ listener=front cluster=web node=- .* end=no_node");
  bool found = false;
  for (auto deadline = in(5s); !found && std::chrono::steady_clock::now() < deadline;) {
    log = read_all(log_file);
    found = std::regex_search(log, rejected);
    if (!found) std::this_thread::sleep_for(20ms);  // the writer thread appends asynchronously
  }
  EXPECT_TRUE(found) << log;
}

TEST(AccessLog, Sigusr1ReopensTheFileForRotation) {
  // Verifies log rotation: after the file is moved away and SIGUSR1 is sent, the next line goes
  // to a new file at the configured path and the moved file keeps what it had.
  Backend node("n1");
  TempDir dir;
  auto file = dir.write("pb.toml", config_with_nodes(R"([[cluster.node]]
name = "n1"
address = ")" + node.address() + R"("
)"));
  Balancer balancer({"--config", file.string()});
  auto one_connection = [&](const std::string& payload) {
    Client client(balancer.address("front"), 5s);
    ASSERT_TRUE(client.send_all(payload));
    client.shutdown_write();
    EXPECT_EQ(client.recv_all(in(5s)), payload);
  };
  const auto log_file = dir.path() / "state" / "access.log";
  const auto rotated = dir.path() / "state" / "access.log.1";
  one_connection("one");  // 3 bytes each way
  const std::string first = wait_lines(log_file, 1);
  ASSERT_EQ(std::count(first.begin(), first.end(), '\n'), 1) << balancer.process().output();
  std::filesystem::rename(log_file, rotated);
  balancer.process().signal(SIGUSR1);
  // The writer thread says when the new file is open; a record submitted before that may
  // still go to the moved file.
  ASSERT_TRUE(balancer.process().wait_for(std::regex("access_log: reopened "), in(5s)))
      << balancer.process().output();
  one_connection("second");  // 6 bytes each way
  const std::string fresh = wait_lines(log_file, 1);
  EXPECT_EQ(std::count(fresh.begin(), fresh.end(), '\n'), 1) << fresh;
  EXPECT_NE(fresh.find(" to_node=6 "), std::string::npos) << fresh;
  const std::string old = read_all(rotated);
  EXPECT_EQ(std::count(old.begin(), old.end(), '\n'), 1) << old;
  EXPECT_NE(old.find(" to_node=3 "), std::string::npos) << old;
}

}  // namespace
}  // namespace pb::test
