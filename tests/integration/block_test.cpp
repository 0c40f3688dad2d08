// End-to-end tests of the block list set at run time: the real protobalance and pbadmin
// binaries, an echo node and clients from distinct loopback sources (127.0.0.x bound before
// connecting) or named by PROXY headers. Counts are read from /metrics; the database is read by
// `pbadmin blocks`, also while the daemon is down.
#include <signal.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"
#include "support/scrape.hpp"

namespace pb::test {
namespace {

using namespace std::chrono_literals;

// A daemon with listeners "web", "mail" and "edge" (which takes PROXY headers from 127.0.0.100),
// all to one echo node, with the exporter on and its state in DIR/var. It can be stopped and
// started again on the same directory and ports.
class Blocked {
 public:
  Blocked() : node_("n") {
    file_ = dir_.write("pb.toml", config({"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}));
    start();
  }

  void start() {
    balancer_ = std::make_unique<Balancer>(std::vector<std::string>{"--config", file_.string()});
    metrics_ = metrics_address(*balancer_);
  }
  // SIGTERM (or SIGKILL: no last write to the database), then waits for the exit; the
  // listeners' ports are written into the file, so that a start() afterwards listens where
  // clients expect it.
  void stop(int signal = SIGTERM) {
    const std::vector<std::string> bound{address("web"), address("mail"), address("edge")};
    balancer_->process().signal(signal);
    ASSERT_EQ(balancer_->process().wait_exit(in(20s)), signal == SIGTERM ? 0 : 128 + signal);
    balancer_.reset();
    file_ = dir_.write("pb.toml", config(bound));
  }

  std::string address(const std::string& listener) const { return balancer_->address(listener); }
  Balancer& balancer() { return *balancer_; }
  Backend& node() { return node_; }
  std::filesystem::path database() const { return dir_.path() / "var" / "protobalance.db"; }
  std::filesystem::path admin_socket() const { return dir_.path() / "var" / "admin.sock"; }

  // Runs pbadmin with this daemon's configuration.
  RunResult pbadmin(std::vector<std::string> args) const {
    args.insert(args.begin(), {binary("pbadmin"), "--config", file_.string()});
    return run(std::move(args), in(30s));
  }

  // The whole exposition of /metrics ("" when the scrape failed).
  std::string scrape() const { return http_get(metrics_, "/metrics").value_or(""); }

  double rejected(const std::string& listener, const std::string& reason) {
    const auto body = http_get(metrics_, "/metrics");
    return body ? Scrape(*body)("protobalance_listener_rejected_total{listener=\"" + listener +
                                "\",reason=\"" + reason + "\"}")
                : -1;
  }

 private:
  // `listen`: the addresses of web, mail and edge.
  std::string config(const std::vector<std::string>& listen) const {
    return R"([service]
threads = 2
state_dir = "var"
shutdown_timeout = "2s"
[metrics]
listen = "127.0.0.1:0"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = ")" + node_.address() + R"("
[[listener]]
name = "web"
listen = ")" + listen[0] + R"("
cluster = "c"
[[listener]]
name = "mail"
listen = ")" + listen[1] + R"("
cluster = "c"
[[listener]]
name = "edge"
listen = ")" + listen[2] + R"("
cluster = "c"
accept_proxy = true
trusted_proxies = ["127.0.0.100"]
)";
  }

  Backend node_;
  TempDir dir_;
  std::filesystem::path file_;
  std::unique_ptr<Balancer> balancer_;
  std::string metrics_;
};

// A connection from `source` that is served end to end: its bytes come back from the echo node.
bool served(const std::string& address, const std::string& source) {
  Client client(address, 5s, source);
  return client.connected() && client.send_all("ping") && client.recv_exact(4, in(5s)) == "ping";
}

// A connection from `source` that the balancer closes without serving it.
bool refused(const std::string& address, const std::string& source) {
  Client client(address, 5s, source);
  if (!client.connected()) return false;
  client.send_all("ping");
  std::string got = client.recv_exact(4, in(5s));
  return got.empty() && client.wait_closed(in(5s)) != PeerClose::timeout;
}

// A connection through the trusted proxy 127.0.0.100 whose PROXY v1 header names `client`;
// what comes back ("ping" when served, "" when refused).
std::string via_proxy(const std::string& address, const std::string& client) {
  const bool v6 = client.find(':') != std::string::npos;
  Client c(address, 5s, "127.0.0.100");
  const std::string header = std::string("PROXY ") + (v6 ? "TCP6 " : "TCP4 ") + client +
                             (v6 ? " ::1" : " 127.0.0.1") + " 5555 80\r\n";
  if (!c.send_all(header + "ping")) return "unsent";
  return c.recv_exact(4, in(5s));
}

boost::json::array blocks_json(const Blocked& b) {
  const auto listed = b.pbadmin({"--json", "blocks"});
  EXPECT_EQ(listed.exit_code, 0) << listed.output;
  boost::system::error_code ec;
  const auto value = boost::json::parse(listed.output, ec);
  if (ec || !value.is_array()) {
    ADD_FAILURE() << "not a JSON array: " << listed.output;
    return {};
  }
  return value.as_array();
}

TEST(Block, RefusesNewAndClosesRunningConnectionsUntilUnblocked) {
  // Verifies `pbadmin block ADDR`: a running connection of the client is closed, its new ones are
  // refused on every listener (counted as `blocked`, and still after a reload) while other
  // clients are served, and `unblock` lets it in again; a second unblock is refused (exit 1).
  Blocked b;
  Client running(b.address("mail"), 5s, "127.0.0.5");
  ASSERT_TRUE(running.send_all("hi"));
  ASSERT_EQ(running.recv_exact(2, in(5s)), "hi");
  Client other(b.address("mail"), 5s, "127.0.0.6");
  ASSERT_TRUE(other.send_all("hi"));
  ASSERT_EQ(other.recv_exact(2, in(5s)), "hi");

  const auto blocked = b.pbadmin({"block", "127.0.0.5"});
  ASSERT_EQ(blocked.exit_code, 0) << blocked.output;
  EXPECT_NE(blocked.output.find("blocked 127.0.0.5 on every listener until unblocked"),
            std::string::npos)
      << blocked.output;
  EXPECT_NE(running.wait_closed(in(10s)), PeerClose::timeout);
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.5"));
  EXPECT_TRUE(refused(b.address("web"), "127.0.0.5"));
  EXPECT_TRUE(served(b.address("mail"), "127.0.0.6"));
  // The other client's running connection is untouched.
  ASSERT_TRUE(other.send_all("yo"));
  EXPECT_EQ(other.recv_exact(2, in(5s)), "yo");
  EXPECT_TRUE(eventually([&] { return b.rejected("mail", "blocked") == 1; }, in(10s)));
  EXPECT_TRUE(eventually([&] { return b.rejected("web", "blocked") == 1; }, in(10s)));
  // A reload rebuilds the listeners' routes: the block stays in force.
  b.balancer().process().signal(SIGHUP);
  ASSERT_TRUE(b.balancer().process().wait_for(std::regex("reloaded .*: no changes"), in(10s)));
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.5"));

  const auto unblocked = b.pbadmin({"unblock", "127.0.0.5"});
  ASSERT_EQ(unblocked.exit_code, 0) << unblocked.output;
  EXPECT_NE(unblocked.output.find("unblocked 127.0.0.5 on every listener"), std::string::npos);
  EXPECT_TRUE(served(b.address("mail"), "127.0.0.5"));
  const auto again = b.pbadmin({"unblock", "127.0.0.5"});
  EXPECT_EQ(again.exit_code, 1) << again.output;
  EXPECT_NE(again.output.find("no block of 127.0.0.5"), std::string::npos) << again.output;
}

TEST(Block, ListenerBlockAppliesToThatListenerOnly) {
  // Verifies `--listener`: a network blocked on web is refused there, served on mail, and its
  // running connection on mail stays open; `blocks` shows the listener.
  Blocked b;
  Client on_mail(b.address("mail"), 5s, "127.0.0.7");
  ASSERT_TRUE(on_mail.send_all("hi"));
  ASSERT_EQ(on_mail.recv_exact(2, in(5s)), "hi");
  const auto blocked = b.pbadmin({"block", "127.0.0.0/29", "--listener", "web"});
  ASSERT_EQ(blocked.exit_code, 0) << blocked.output;
  EXPECT_TRUE(refused(b.address("web"), "127.0.0.7"));
  EXPECT_TRUE(served(b.address("mail"), "127.0.0.7"));
  EXPECT_TRUE(served(b.address("web"), "127.0.0.9"));  // outside the /29
  ASSERT_TRUE(on_mail.send_all("yo"));
  EXPECT_EQ(on_mail.recv_exact(2, in(5s)), "yo");
  const auto table = b.pbadmin({"blocks"});
  EXPECT_EQ(table.exit_code, 0);
  const std::regex table_lines(R"(NETWORK\s+LISTENER\s+CREATED\s+EXPIRES\n)"
                               R"(127\.0\.0\.0/29\s+web\s+\d{4}-\d\d-\d\dT[\d:]+Z\s+-\n)");
  EXPECT_TRUE(std::regex_search(table.output, table_lines)) << table.output;
  EXPECT_TRUE(eventually([&] { return b.rejected("web", "blocked") == 1; }, in(10s)));
  EXPECT_EQ(b.rejected("mail", "blocked"), 0);

  // The admin API's own list (GET /v1/blocks), as the daemon holds it.
  const auto api = run({"/usr/bin/env", "curl", "-s", "--max-time", "10", "--unix-socket",
                        b.admin_socket().string(), "http://localhost/v1/blocks"});
  ASSERT_EQ(api.exit_code, 0) << api.output;
  boost::system::error_code ec;
  const auto document = boost::json::parse(api.output, ec);
  ASSERT_FALSE(ec) << api.output;
  const auto& listed = document.at("blocks").as_array();
  ASSERT_EQ(listed.size(), 1u) << api.output;
  EXPECT_EQ(listed[0].at("network"), "127.0.0.0/29");
  EXPECT_EQ(listed[0].at("listener"), "web");
  EXPECT_TRUE(listed[0].at("expires").is_null());
}

TEST(Block, DecodedClientOfProxyHeaderIpv6AndIpv4Mapped) {
  // Verifies blocks apply to the client a PROXY header names (not the proxy): an IPv6 /32 and
  // an IPv4 /24 that an IPv4-mapped IPv6 client falls in; the proxy's own other clients pass.
  Blocked b;
  ASSERT_EQ(b.pbadmin({"block", "2001:db8::/32"}).exit_code, 0);
  ASSERT_EQ(b.pbadmin({"block", "192.0.2.0/24"}).exit_code, 0);
  EXPECT_EQ(via_proxy(b.address("edge"), "2001:db8:5::1"), "");
  EXPECT_EQ(via_proxy(b.address("edge"), "2001:db9::1"), "ping");
  EXPECT_EQ(via_proxy(b.address("edge"), "::ffff:192.0.2.66"), "");
  EXPECT_EQ(via_proxy(b.address("edge"), "192.0.2.67"), "");
  EXPECT_EQ(via_proxy(b.address("edge"), "198.51.100.1"), "ping");
  EXPECT_TRUE(eventually([&] { return b.rejected("edge", "blocked") == 3; }, in(10s)));
  EXPECT_EQ(b.rejected("edge", "proxy"), 0);
}

TEST(Block, ExpiresWithoutUnblockAndLeavesTheDatabase) {
  // Verifies `--for`: the block refuses at once, stops applying once its time is up (waited for
  // with a deadline), and its row is deleted from the database.
  Blocked b;
  const auto blocked = b.pbadmin({"block", "127.0.0.8", "--for", "2s"});
  ASSERT_EQ(blocked.exit_code, 0) << blocked.output;
  EXPECT_TRUE(std::regex_search(blocked.output, std::regex(R"(until \d{4}-\d\d-\d\dT[\d:]+Z)")))
      << blocked.output;
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.8"));
  EXPECT_TRUE(eventually([&] { return served(b.address("mail"), "127.0.0.8"); }, in(15s)));
  EXPECT_TRUE(b.balancer().process().wait_for(std::regex("block of 127.0.0.8 .* ended"), in(5s)));
  EXPECT_TRUE(eventually(
      [&] {
        SQLite::Database db(b.database().string(), SQLite::OPEN_READONLY);
        return db.execAndGet("SELECT count(*) FROM block").getInt() == 0;
      },
      in(10s)));
  EXPECT_TRUE(blocks_json(b).empty());
}

TEST(Block, SurvivesRestartAndIsListedWhileDown) {
  // Verifies that blocks are kept in the database: `blocks --json` lists them while the daemon
  // is down (block/unblock then exit 3), and a restarted daemon refuses the client at once.
  Blocked b;
  ASSERT_EQ(b.pbadmin({"block", "127.0.0.10", "--listener", "mail", "--for", "1h"}).exit_code, 0);
  ASSERT_EQ(b.pbadmin({"block", "2001:DB8::/32"}).exit_code, 0);
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.10"));
  b.stop();

  const auto listed = blocks_json(b);
  ASSERT_EQ(listed.size(), 2u) << boost::json::serialize(listed);
  const auto& first = listed[0].as_object();  // ordered by network text
  EXPECT_EQ(first.at("network"), "127.0.0.10");
  EXPECT_EQ(first.at("listener"), "mail");
  EXPECT_TRUE(std::regex_match(std::string(first.at("created").as_string()),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  EXPECT_TRUE(std::regex_match(std::string(first.at("expires").as_string()),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
  const auto& second = listed[1].as_object();
  EXPECT_EQ(second.at("network"), "2001:db8::/32");
  EXPECT_TRUE(second.at("listener").is_null());
  EXPECT_TRUE(second.at("expires").is_null());
  EXPECT_EQ(b.pbadmin({"block", "127.0.0.11"}).exit_code, 3);
  EXPECT_EQ(b.pbadmin({"unblock", "127.0.0.10"}).exit_code, 3);

  b.start();
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.10"));
  EXPECT_TRUE(served(b.address("web"), "127.0.0.10"));
  EXPECT_TRUE(b.balancer().process().wait_for(std::regex("block of 127.0.0.10 on listener mail"),
                                              in(5s)));
}

TEST(Block, StoredWhenAnsweredSoAKillRightAfterKeepsIt) {
  // Verifies the answer's promise: block and unblock are committed to the database before
  // pbadmin gets its answer (the write runs on the store's writer thread, not the control
  // thread), so a daemon killed with SIGKILL right after the command (no last write on the way
  // out; the writer's periodic commit is 1 s away) still has them after a restart.
  Blocked b;
  ASSERT_EQ(b.pbadmin({"block", "127.0.0.12"}).exit_code, 0);
  ASSERT_EQ(b.pbadmin({"block", "127.0.0.13", "--listener", "mail"}).exit_code, 0);
  b.stop(SIGKILL);
  b.start();
  EXPECT_TRUE(refused(b.address("web"), "127.0.0.12"));
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.13"));
  EXPECT_TRUE(served(b.address("web"), "127.0.0.13"));

  ASSERT_EQ(b.pbadmin({"unblock", "127.0.0.12"}).exit_code, 0);
  b.stop(SIGKILL);
  b.start();
  EXPECT_TRUE(served(b.address("web"), "127.0.0.12"));
  EXPECT_TRUE(refused(b.address("mail"), "127.0.0.13"));
  const auto listed = blocks_json(b);
  ASSERT_EQ(listed.size(), 1u) << boost::json::serialize(listed);
  EXPECT_EQ(listed[0].as_object().at("network"), "127.0.0.13");
}

TEST(Block, BadInputIsAUsageError) {
  // Verifies exit 2 with a message naming the problem for a bad address, a network with host
  // bits, a bad or zero duration and an unknown listener; nothing is blocked by them. pbadmin
  // reads networks with the balancer's parser: what the balancer would refuse (a prefix length
  // with a leading zero, a zone id) is a usage error here too, not a refusal by the daemon.
  Blocked b;
  const auto expect_usage = [&](std::vector<std::string> args, const std::string& says) {
    const auto result = b.pbadmin(args);
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_NE(result.output.find(says), std::string::npos) << result.output;
  };
  expect_usage({"block", "300.1.2.3"}, "bad network \"300.1.2.3\": expected an IPv4 or IPv6");
  expect_usage({"block", "192.0.2.1/24"},
               "host bits are set in \"192.0.2.1/24\": the network is 192.0.2.0/24");
  expect_usage({"block", "192.0.2.0/33"}, "bad prefix length in \"192.0.2.0/33\": expected 0..32");
  expect_usage({"block", "192.0.2.0/024"}, "bad prefix length");
  expect_usage({"block", "fe80::1%eth0"}, "bad network");
  expect_usage({"block", "127.0.0.5", "--for", "5x"}, "--for '5x' is not a duration");
  expect_usage({"block", "127.0.0.5", "--for", "0s"}, "--for '0s' is not a duration");
  expect_usage({"block", "127.0.0.5", "--listener", "nope"}, "no listener named 'nope'");
  expect_usage({"unblock", "not-an-address"}, "bad network \"not-an-address\"");
  expect_usage({"block"}, "NETWORK is required");
  EXPECT_TRUE(blocks_json(b).empty());
  EXPECT_TRUE(served(b.address("mail"), "127.0.0.5"));
}

TEST(Block, CountInForceShowsInStatusAndMetrics) {
  // Verifies that the number of blocks in force is in `pbadmin status` (text and --json) and in
  // the gauge protobalance_blocks (an exposition promtool accepts); an ended block and a lifted
  // one stop counting.
  Blocked b;
  auto status_blocks = [&] {
    const auto status = b.pbadmin({"--json", "status"});
    boost::system::error_code ec;
    const auto start = status.output.find('{');
    if (status.exit_code != 0 || start == std::string::npos) return std::int64_t{-1};
    const auto value = boost::json::parse(status.output.substr(start), ec);
    if (ec || !value.is_object() || !value.as_object().contains("blocks")) return std::int64_t{-1};
    return value.as_object().at("blocks").to_number<std::int64_t>();
  };
  auto gauge = [&] { return Scrape(b.scrape())("protobalance_blocks"); };
  EXPECT_EQ(status_blocks(), 0);
  EXPECT_EQ(gauge(), 0);

  ASSERT_EQ(b.pbadmin({"block", "192.0.2.0/24"}).exit_code, 0);
  ASSERT_EQ(b.pbadmin({"block", "2001:db8::/32", "--listener", "web"}).exit_code, 0);
  ASSERT_EQ(b.pbadmin({"block", "127.0.0.12", "--for", "2s"}).exit_code, 0);
  EXPECT_EQ(status_blocks(), 3);
  EXPECT_EQ(gauge(), 3);
  const auto text = b.pbadmin({"status"});
  EXPECT_NE(text.output.find("blocks in force: 3\n"), std::string::npos) << text.output;
  const auto file = b.database().parent_path() / "scrape.txt";
  {
    std::ofstream out(file);
    out << b.scrape();
  }
  const RunResult promtool =
      run({"/bin/sh", "-c", "promtool check metrics < '" + file.string() + "'"});
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;

  // The timed block ends by itself; the unblocked one is lifted.
  EXPECT_TRUE(eventually([&] { return status_blocks() == 2; }, in(20s)));
  ASSERT_EQ(b.pbadmin({"unblock", "192.0.2.0/24"}).exit_code, 0);
  EXPECT_EQ(status_blocks(), 1);
  EXPECT_EQ(gauge(), 1);
}
}  // namespace
}  // namespace pb::test
