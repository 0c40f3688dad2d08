// pbadmin affinity list, run as the real binary against a real database file.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>

#include "protobalance/state/store.hpp"
#include "protobalance/config/utc_time.hpp"

namespace pb::pbadmin {
namespace {

using affinity::AffinityRow;
using config::format_utc;
using state::PutAffinity;
using namespace std::chrono_literals;

struct Outcome {
  int exit_code = -1;  // 128 + N when killed by signal N
  std::string out;
  std::string err;
};

// Runs build/bin/pbadmin with `args`, collecting stdout and stderr apart (the JSON must be
// parseable on its own); kills it if it has not finished by the deadline.
Outcome pbadmin(const std::vector<std::string>& args, std::chrono::seconds timeout = 30s) {
  const std::string binary = std::string(PB_BIN_DIR) + "/pbadmin";
  std::vector<std::string> argv_text{binary};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);

  int out_pipe[2];
  int err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2 failed";
    return {};
  }
  const pid_t pid = fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    dup2(out_pipe[1], STDOUT_FILENO);
    dup2(err_pipe[1], STDERR_FILENO);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  Outcome outcome;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&outcome.out, &outcome.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      ADD_FAILURE() << "pbadmin did not finish within " << timeout.count() << " s";
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, static_cast<int>(left.count())) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (const auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) result.push_back(line);
  return result;
}

std::int64_t now_s() {
  return std::chrono::floor<std::chrono::seconds>(affinity::Clock::now().time_since_epoch())
      .count();
}

// A state directory with a configuration: clusters web (ttl 1h) and mail (default 30d).
class PbadminAffinity : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = "/tmp/pb_pbadmin_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    config_ = dir_ / "protobalance.toml";
    std::ofstream(config_) << R"([service]
state_dir = "state"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"

[[cluster]]
name = "web"
[cluster.affinity]
enabled = true
ttl = "1h"
[[cluster.node]]
name = "alpha"
address = "127.0.0.1:9001"
[[cluster.node]]
name = "beta"
address = "127.0.0.1:9002"

[[cluster]]
name = "mail"
[cluster.affinity]
enabled = true
prefix_v4 = 24
[[cluster.node]]
name = "mx1"
address = "127.0.0.1:9003"
)";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  std::filesystem::path state_dir() const { return dir_ / "state"; }

  // The entries every test lists: 3 live in web, 1 expired in web, 2 in mail.
  void write_entries(state::Store& store) {
    store.enqueue(PutAffinity{AffinityRow{"web", "192.0.2.10", "beta", t_ - 50, t_ - 5, 7}});
    store.enqueue(PutAffinity{AffinityRow{"web", "192.0.2.9", "alpha", t_ - 100, t_ - 10, 2}});
    store.enqueue(PutAffinity{AffinityRow{"web", "2001:db8:1:2::/64", "alpha", t_, t_, 1}});
    store.enqueue(PutAffinity{AffinityRow{"web", "192.0.2.77", "alpha", t_ - 9000, t_ - 7200, 4}});
    store.enqueue(PutAffinity{AffinityRow{"mail", "192.0.2.0/24", "mx1", t_ - 86400, t_, 123}});
    store.enqueue(PutAffinity{AffinityRow{"mail", "198.51.100.0/24", "mx1", t_, t_, 1}});
  }

  std::vector<std::string> base() const { return {"--config", config_.string()}; }
  std::vector<std::string> with(std::vector<std::string> more) const {
    auto args = base();
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }

  std::filesystem::path dir_;
  std::filesystem::path config_;
  const std::int64_t t_ = now_s();
};

TEST_F(PbadminAffinity, ListsTableWhileBalancerIsDown) {
  // Verifies the human output with no balancer running: an aligned table sorted by cluster then
  // numerically by client, ISO 8601 UTC times, and the expired entry left out.
  {
    state::Store store(state_dir());
    write_entries(store);
  }  // closed: the daemon is down

  const Outcome r = pbadmin(with({"affinity", "list"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  const auto table = lines(r.out);
  ASSERT_EQ(table.size(), 6u) << r.out;  // header + 5 live entries
  EXPECT_TRUE(table[0].starts_with("CLIENT")) << table[0];
  const std::vector<std::string> order{"192.0.2.0/24", "198.51.100.0/24", "192.0.2.9", "192.0.2.10",
                                       "2001:db8:1:2::/64"};
  const std::size_t node_col = table[0].find("NODE");
  const std::size_t first_col = table[0].find("FIRST_SEEN");
  for (std::size_t i = 0; i < order.size(); ++i) {
    EXPECT_TRUE(table[i + 1].starts_with(order[i] + " ")) << table[i + 1];
    EXPECT_EQ(table[i + 1].find_first_not_of(' ', node_col), node_col) << table[i + 1];
    EXPECT_EQ(table[i + 1].substr(first_col - 2, 2), "  ") << table[i + 1];
    EXPECT_EQ(table[i + 1].size(), table[0].size()) << "right-aligned counts end with the header";
  }
  EXPECT_NE(table[2 + 1].find(format_utc(t_ - 100) + "  " + format_utc(t_ - 10)), std::string::npos)
      << table[3];
  EXPECT_TRUE(table[1].ends_with(" 123")) << table[1];
  EXPECT_EQ(r.out.find("192.0.2.77"), std::string::npos) << "expired entry listed";
}

TEST_F(PbadminAffinity, FiltersByClusterNodeAndClient) {
  // Verifies --cluster, --node and --client, alone and combined; an address finds the network
  // entry holding it, and a network finds the address entries inside it.
  {
    state::Store store(state_dir());
    write_entries(store);
  }

  const auto clients = [&](std::vector<std::string> args) {
    const Outcome r = pbadmin(with(std::move(args)));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    std::vector<std::string> found;
    const auto table = lines(r.out);
    for (std::size_t i = 1; i < table.size(); ++i)
      found.push_back(table[i].substr(0, table[i].find(' ')));
    return found;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(clients({"affinity", "list", "--cluster", "mail"}),
            (V{"192.0.2.0/24", "198.51.100.0/24"}));
  EXPECT_EQ(clients({"affinity", "list", "--node", "alpha"}),
            (V{"192.0.2.9", "2001:db8:1:2::/64"}));
  EXPECT_EQ(clients({"affinity", "list", "--cluster", "web", "--node", "beta"}), (V{"192.0.2.10"}));
  EXPECT_EQ(clients({"affinity", "list", "--client", "192.0.2.200"}), (V{"192.0.2.0/24"}));
  EXPECT_EQ(clients({"affinity", "list", "--client", "192.0.2.0/24"}),
            (V{"192.0.2.0/24", "192.0.2.9", "192.0.2.10"}));
  EXPECT_EQ(clients({"affinity", "list", "--client", "2001:db8:1:2::abcd"}),
            (V{"2001:db8:1:2::/64"}));
  EXPECT_EQ(clients({"affinity", "list", "--cluster", "nope"}), V{});

  const Outcome bad = pbadmin(with({"affinity", "list", "--client", "not-an-ip"}));
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_EQ(lines(bad.err).size(), 1u) << bad.err;
}

TEST_F(PbadminAffinity, JsonWhileBalancerWrites) {
  // Verifies --json (before or after the command) with a store still open and holding its
  // changes in the WAL, as a running balancer does: the read-only reader sees committed rows.
  state::Store store(state_dir());
  write_entries(store);
  store.flush();

  for (const auto& args : {with({"--json", "affinity", "list", "--cluster", "web"}),
                           with({"affinity", "list", "--cluster", "web", "--json"})}) {
    const Outcome r = pbadmin(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const boost::json::value doc = boost::json::parse(r.out);
    ASSERT_TRUE(doc.is_array()) << r.out;
    const auto& array = doc.as_array();
    ASSERT_EQ(array.size(), 3u) << r.out;
    const auto& first = array[0].as_object();
    EXPECT_EQ(first.at("client").as_string(), "192.0.2.9");
    EXPECT_EQ(first.at("cluster").as_string(), "web");
    EXPECT_EQ(first.at("node").as_string(), "alpha");
    EXPECT_EQ(first.at("first_seen").as_string(), format_utc(t_ - 100));
    EXPECT_EQ(first.at("last_seen").as_string(), format_utc(t_ - 10));
    EXPECT_EQ(first.at("connections").to_number<std::int64_t>(), 2);
    EXPECT_EQ(array[1].as_object().at("client").as_string(), "192.0.2.10");
    EXPECT_EQ(array[2].as_object().at("client").as_string(), "2001:db8:1:2::/64");
  }

  // A change committed after the first read shows up in the next one.
  store.enqueue(PutAffinity{AffinityRow{"web", "192.0.2.1", "beta", t_, t_, 1}});
  store.flush();
  const Outcome r = pbadmin(with({"--json", "affinity", "list", "--node", "beta"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(boost::json::parse(r.out).as_array().size(), 2u) << r.out;
}

TEST_F(PbadminAffinity, MissingDatabaseIsAnEmptyList) {
  // Verifies that before the balancer ever ran there is an empty list (exit 0) with a note on
  // stderr, and that pbadmin does not create the database.
  Outcome r = pbadmin(with({"--json", "affinity", "list"}));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "[]\n");
  EXPECT_NE(r.err.find("no affinity database at"), std::string::npos) << r.err;
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;

  r = pbadmin(with({"affinity", "list"}));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(lines(r.out).size(), 1u) << r.out;  // the header
  EXPECT_FALSE(std::filesystem::exists(state_dir() / "protobalance.db"));
}

TEST_F(PbadminAffinity, NewerSchemaRefusedWithExit1) {
  // Verifies that a database written by a newer release (schema version beyond this binary's)
  // is refused: exit 1, one line naming the file and saying it is newer, nothing listed.
  std::filesystem::create_directories(state_dir());
  {
    SQLite::Database db((state_dir() / "protobalance.db").string(),
                        SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE affinity (future BLOB)");
    db.exec("PRAGMA user_version = 99");
  }
  for (const bool json : {false, true}) {
    auto args = with({"affinity", "list"});
    if (json) args.push_back("--json");
    const Outcome r = pbadmin(args);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
    EXPECT_NE(r.err.find("protobalance.db"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("schema version 99 is newer"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(PbadminAffinity, UnreadableDatabaseFailsWithExit1) {
  // Verifies that a database file pbadmin cannot read is a failure (exit 1, one line naming the
  // file), and that pbadmin leaves the file as it was.
  std::filesystem::create_directories(state_dir());
  std::ofstream(state_dir() / "protobalance.db") << std::string(10000, 'x');
  const Outcome r = pbadmin(with({"affinity", "list"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("protobalance.db"), std::string::npos) << r.err;
  EXPECT_EQ(std::filesystem::file_size(state_dir() / "protobalance.db"), 10000u);
}

TEST_F(PbadminAffinity, ConfigErrorsExit2) {
  // Verifies that a missing configuration file and an invalid one exit 2, the latter with its
  // FILE:LINE:COL diagnostics.
  Outcome r = pbadmin({"--config", (dir_ / "absent.toml").string(), "affinity", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_NE(r.err.find("absent.toml"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");

  const auto bad = dir_ / "bad.toml";
  std::ofstream(bad) << "[service]\nstate_dir = \"state\"\nbogus_key = 1\n";
  r = pbadmin({"--config", bad.string(), "affinity", "list"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find(bad.string() + ":3:"), std::string::npos) << r.err;
}

TEST_F(PbadminAffinity, UsageErrorsExit2AndHelpVersionExit0) {
  // Verifies the command-line contract: unknown or missing commands and options exit 2 with one
  // line on stderr; --help and --version print to stdout and exit 0.
  for (const auto& args :
       {with({"frobnicate"}), with({"affinity", "lsit"}), with({"affinity"}), with({}),
        with({"affinity", "list", "--bogus"}), with({"affinity", "list", "--cluster"})}) {
    const Outcome r = pbadmin(args);
    EXPECT_EQ(r.exit_code, 2) << args.back();
    EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
    EXPECT_EQ(r.out, "") << args.back();
  }
  Outcome r = pbadmin({"frobnicate"});
  EXPECT_NE(r.err.find("frobnicate"), std::string::npos) << r.err;

  r = pbadmin({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("0."), std::string::npos) << r.out;
  r = pbadmin({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("affinity"), std::string::npos) << r.out;
  r = pbadmin({"affinity", "list", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("--client"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace pb::pbadmin
