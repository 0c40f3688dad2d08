// End-to-end tests of `pbadmin top` (issue 15): the real daemon and the real pbadmin, in plain
// mode (stdout a pipe) and under a pseudo-terminal (ncurses screen, the `q` key).
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::test {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) result.push_back(line);
  return result;
}

// A daemon with one listener "web" and a cluster of two nodes: alpha (available, a real
// backend) and beta (draining).
class Top : public ::testing::Test {
 protected:
  void SetUp() override {
    file_ = dir_.write("pb.toml",
                       "[service]\nthreads = 1\nstate_dir = \"var\"\nshutdown_timeout = \"3s\"\n"
                       "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ncluster = \"web\"\n"
                       "[[cluster]]\nname = \"web\"\n"
                       "[[cluster.node]]\nname = \"alpha\"\naddress = \"" +
                           alpha_.address() +
                           "\"\n"
                           "[[cluster.node]]\nname = \"beta\"\naddress = \"" +
                           beta_.address() + "\"\nstate = \"draining\"\n");
    balancer_ = std::make_unique<Balancer>(std::vector<std::string>{"--config", file_.string()});
  }

  std::string config() const { return file_.string(); }
  Balancer& balancer() { return *balancer_; }

 private:
  TempDir dir_;
  Backend alpha_{"alpha"};
  Backend beta_{"beta"};
  fs::path file_;
  std::unique_ptr<Balancer> balancer_;
};

TEST_F(Top, PlainModePrintsCountRefreshesLineByLine) {
  // Verifies `top -n 2` with stdout not a terminal: two frames of plain text without escape
  // codes, checked line by line; rates "-" in the first frame (no earlier sample) and numbers
  // in the second; then exit 0.
  const RunResult r =
      run({binary("pbadmin"), "--config", config(), "top", "-n", "2", "--interval", "200ms"},
          in(30s));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find('\x1b'), std::string::npos) << "escape codes in plain mode";
  const auto out = lines(r.output);
  ASSERT_EQ(out.size(), 17U) << r.output;  // 2 x 8 lines and a blank line between frames
  const std::string summary = "pbadmin top: 1 listener, 2 nodes (2 up), 0 affinity entries";
  const std::regex listener_header(R"(LISTENER +ADDRESS +CLUSTER +ACTIVE +CONN/S)");
  const std::regex node_header(
      R"(CLUSTER +NODE +ADDRESS +STATE +UP +TIER +ACTIVE +CONN/S +BYTES/S +FAILURES)");
  const std::string web = "web +127\\.0\\.0\\.1:[0-9]+ +web +[0-9]+ +";
  const std::string node = " +127\\.0\\.0\\.1:[0-9]+ +";
  for (std::size_t frame = 0; frame < 2; ++frame) {
    const std::size_t at = frame * 9;
    const std::string rate = frame == 0 ? "-" : "[0-9.]+";
    const std::string bytes = frame == 0 ? "-" : "[0-9.]+[KMGTP]?";
    EXPECT_EQ(out[at], summary);
    EXPECT_EQ(out[at + 1], "");
    EXPECT_TRUE(std::regex_match(out[at + 2], listener_header)) << out[at + 2];
    EXPECT_TRUE(std::regex_match(out[at + 3], std::regex(web + rate))) << out[at + 3];
    EXPECT_EQ(out[at + 4], "");
    EXPECT_TRUE(std::regex_match(out[at + 5], node_header)) << out[at + 5];
    EXPECT_TRUE(std::regex_match(
        out[at + 6], std::regex("web +alpha" + node + "available +up +1 +0 +" + rate + " +" +
                                bytes + " +0")))
        << out[at + 6];
    EXPECT_TRUE(std::regex_match(
        out[at + 7], std::regex("web +beta" + node + "draining +up +1 +0 +" + rate + " +" +
                                bytes + " +0")))
        << out[at + 7];
    if (frame == 0) {
      EXPECT_EQ(out[at + 8], "");
    }
  }
}

TEST_F(Top, StatusCountsBytesPerNode) {
  // Verifies the status document's byte counters that top's BYTES/S is computed from: 5 bytes
  // each way through alpha, polled until the session has been accounted.
  {
    Client client(balancer().address("web"));
    ASSERT_TRUE(client.connected()) << client.error();
    ASSERT_TRUE(client.send_all("hello"));
    EXPECT_EQ(client.recv_exact(5), "hello");
  }
  const auto deadline = in(10s);
  std::string last;
  for (;;) {
    last = run({binary("pbadmin"), "--config", config(), "--json", "status"}).output;
    if (last.find(R"("name":"alpha")") != std::string::npos &&
        last.find(R"("bytes_to_node":5,"bytes_to_client":5)") != std::string::npos) {
      break;
    }
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << last;
    std::this_thread::sleep_for(50ms);  // polling interval, bounded by the deadline
  }
  EXPECT_NE(last.find(R"("affinity_entries":0)"), std::string::npos) << last;
}

TEST_F(Top, UsageAndUnreachable) {
  // Verifies exit 2 for a bad --interval or --json, and exit 3 when no daemon answers.
  const RunResult bad =
      run({binary("pbadmin"), "--config", config(), "top", "--interval", "10ms", "-n", "1"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("--interval"), std::string::npos) << bad.output;
  const RunResult json = run({binary("pbadmin"), "--config", config(), "--json", "top", "-n", "1"});
  EXPECT_EQ(json.exit_code, 2) << json.output;

  balancer().process().signal(SIGTERM);
  ASSERT_EQ(balancer().process().wait_exit(in(15s)), 0);
  const RunResult gone = run({binary("pbadmin"), "--config", config(), "top", "-n", "1"});
  EXPECT_EQ(gone.exit_code, 3) << gone.output;
  EXPECT_NE(gone.output.find("not running"), std::string::npos) << gone.output;
}

// pbadmin in a pseudo-terminal of 120 x 30 with the given TERM; the test reads the screen from
// the master side and types into it.
class PtyProcess {
 public:
  PtyProcess(const std::vector<std::string>& args, const std::string& term) {
    std::vector<std::string> argv_text{binary("pbadmin")};
    argv_text.insert(argv_text.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_text) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The environment is built before fork: only async-signal-safe calls in the child.
    std::vector<std::string> env_text{"TERM=" + term, "LANG=C"};
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      if (entry.rfind("TERM=", 0) != 0 && entry.rfind("LANG=", 0) != 0 &&
          entry.rfind("LC_", 0) != 0 && entry.rfind("COLUMNS=", 0) != 0 &&
          entry.rfind("LINES=", 0) != 0) {
        env_text.push_back(entry);
      }
    }
    std::vector<char*> envp;
    for (auto& e : env_text) envp.push_back(e.data());
    envp.push_back(nullptr);
    winsize size{};
    size.ws_row = 30;
    size.ws_col = 120;
    pid_ = ::forkpty(&master_, nullptr, nullptr, &size);
    if (pid_ == 0) {
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(127);
    }
  }
  ~PtyProcess() {
    if (pid_ > 0 && !exit_code_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }
  PtyProcess(const PtyProcess&) = delete;
  PtyProcess& operator=(const PtyProcess&) = delete;

  bool started() const { return pid_ > 0 && master_ >= 0; }

  // Reads the screen until every one of `needles` has appeared; false at the deadline.
  bool wait_for(const std::vector<std::string>& needles, Deadline deadline) {
    for (;;) {
      bool all = true;
      for (const auto& n : needles) all = all && screen_.find(n) != std::string::npos;
      if (all) return true;
      if (!read_some(deadline)) return false;
    }
  }

  void type(const std::string& keys) {
    const ssize_t n = ::write(master_, keys.data(), keys.size());
    EXPECT_EQ(n, static_cast<ssize_t>(keys.size()));
  }

  // The exit code once pbadmin has exited, reading (and so draining) the screen meanwhile.
  std::optional<int> wait_exit(Deadline deadline) {
    for (;;) {
      int status = 0;
      const pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return exit_code_;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      read_some(std::min(deadline, in(20ms)));
    }
  }

  const std::string& screen() const { return screen_; }

 private:
  // One read from the master within the deadline; false on timeout or when the child has gone.
  bool read_some(Deadline deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{master_, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return false;
    char buffer[4096];
    const ssize_t n = ::read(master_, buffer, sizeof buffer);
    if (n <= 0) return false;  // EIO once the child has closed the terminal
    screen_.append(buffer, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int master_ = -1;
  std::optional<int> exit_code_;
  std::string screen_;
};

TEST_F(Top, ScreenShowsNodesInColourAndQQuits) {
  // Verifies the ncurses view under a pseudo-terminal: the nodes appear, available in green and
  // draining in yellow (xterm's SGR 32 and 33), and typing q ends pbadmin with exit 0.
  PtyProcess top({"--config", config(), "top", "--interval", "200ms"}, "xterm-256color");
  ASSERT_TRUE(top.started());
  ASSERT_TRUE(top.wait_for({"alpha", "beta", "available", "draining", "FAILURES"}, in(15s)))
      << top.screen();
  EXPECT_NE(top.screen().find("\x1b[32mweb"), std::string::npos) << "alpha not green";
  EXPECT_NE(top.screen().find("\x1b[33mweb"), std::string::npos) << "beta not yellow";
  top.type("q");
  EXPECT_EQ(top.wait_exit(in(10s)), 0) << top.screen();
}

TEST_F(Top, ScreenWithoutColoursAndCountExits) {
  // Verifies that on a terminal without colours (TERM=vt100) the screen has no colour codes,
  // and that -n 2 ends the screen by itself after two refreshes.
  PtyProcess top({"--config", config(), "top", "-n", "2", "--interval", "200ms"}, "vt100");
  ASSERT_TRUE(top.started());
  EXPECT_EQ(top.wait_exit(in(15s)), 0) << top.screen();
  EXPECT_NE(top.screen().find("alpha"), std::string::npos) << top.screen();
  EXPECT_EQ(top.screen().find("\x1b[32m"), std::string::npos) << "colour on a vt100";
  EXPECT_EQ(top.screen().find("\x1b[33m"), std::string::npos) << "colour on a vt100";
}

}  // namespace
}  // namespace pb::test
