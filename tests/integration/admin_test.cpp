// End-to-end tests of the control plane: the real protobalance daemon and the real pbadmin tool,
// real TCP backends, and the admin API spoken by hand over its Unix socket.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
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
namespace json = boost::json;

// ---- running pbadmin ----

struct Outcome {
  int exit_code = -1;  // 128 + N when killed by signal N
  std::string out;
  std::string err;
};

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) result.push_back(line);
  return result;
}

// Runs build/bin/pbadmin with stdout and stderr kept apart (the JSON must parse on its own);
// kills it if it has not finished by the deadline.
Outcome run_pbadmin(const std::vector<std::string>& args, Deadline deadline = in(30s)) {
  std::vector<std::string> argv_text{binary("pbadmin")};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_text) argv.push_back(a.data());
  argv.push_back(nullptr);
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ADD_FAILURE() << "pipe2 failed";
    return {};
  }
  const pid_t pid = ::fork();
  if (pid == 0) {  // only async-signal-safe calls until exec
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    ::close_range(3, ~0U, 0);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  Outcome outcome;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&outcome.out, &outcome.err};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      ADD_FAILURE() << "pbadmin did not finish before its deadline";
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left.count())) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, static_cast<std::size_t>(n));
      } else {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (const auto& fd : fds) {
    if (fd.fd >= 0) ::close(fd.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  outcome.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return outcome;
}

// ---- speaking HTTP by hand over the admin socket ----

struct RawReply {
  int status = 0;  // 0 when no status line came back
  std::string head;
  std::string body;
};

// Connects to the Unix socket at `path`, sends `request` as is, and reads until the daemon
// closes the connection or the deadline passes. Several answers (keep-alive) stay concatenated
// in `body`; `status` and `head` are those of the first.
RawReply raw_exchange(const fs::path& path, const std::string& request, Deadline deadline = in(10s)) {
  RawReply reply;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    ADD_FAILURE() << "socket() failed";
    return reply;
  }
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof address.sun_path, "%s", path.c_str());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ADD_FAILURE() << "cannot connect to " << path << ": " << std::strerror(errno);
    ::close(fd);
    return reply;
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  std::string received;
  std::size_t sent = 0;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left <= 0ms) {
      ADD_FAILURE() << "no end of the answer before the deadline; got: " << received;
      break;
    }
    pollfd p{fd, static_cast<short>(POLLIN | (sent < request.size() ? POLLOUT : 0)), 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) < 0) continue;
    if ((p.revents & POLLOUT) != 0 && sent < request.size()) {
      // MSG_NOSIGNAL: the daemon may close before taking everything (that is the 413 case).
      const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EAGAIN) {
        sent = request.size();  // the daemon closed its side: read what it answered
      }
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      char buffer[8192];
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n > 0) {
        received.append(buffer, static_cast<std::size_t>(n));
      } else if (n == 0 || errno != EAGAIN) {
        break;
      }
    }
  }
  ::close(fd);
  const std::size_t end = received.find("\r\n\r\n");
  if (end == std::string::npos) return reply;
  reply.head = received.substr(0, end);
  reply.body = received.substr(end + 4);
  std::smatch match;
  if (std::regex_search(reply.head, match, std::regex("^HTTP/1\\.1 (\\d{3}) "))) {
    reply.status = std::stoi(match[1].str());
  }
  return reply;
}

// The {"error": "..."} message of an answer body, or "" when the body is not such an object.
std::string error_of(const std::string& body) {
  boost::system::error_code ec;
  const json::value value = json::parse(body, ec);
  if (ec || !value.is_object()) return {};
  const json::value* error = value.as_object().if_contains("error");
  return error != nullptr && error->is_string() ? std::string(error->as_string()) : std::string();
}

// ---- configuration snippets ----

std::string service_table(const std::string& extra = "") {
  return "[service]\nthreads = 2\nstate_dir = \"var\"\nshutdown_timeout = \"3s\"\n" + extra;
}

std::string listener_table(const std::string& name, const std::string& cluster,
                           const std::string& listen = "127.0.0.1:0") {
  return "[[listener]]\nname = \"" + name + "\"\nlisten = \"" + listen + "\"\ncluster = \"" +
         cluster + "\"\n";
}

std::string cluster_table(const std::string& name, const std::string& algorithm = "round_robin",
                          bool affinity = false) {
  std::string text = "[[cluster]]\nname = \"" + name + "\"\nalgorithm = \"" + algorithm +
                     "\"\nretry_interval = \"1s\"\n";
  if (algorithm == "hash") text += "hash_key = \"000102030405060708090a0b0c0d0e0f\"\n";
  if (affinity) text += "[cluster.affinity]\nenabled = true\n";
  return text;
}

std::string node_table(const std::string& name, const std::string& address) {
  return "[[cluster.node]]\nname = \"" + name + "\"\naddress = \"" + address + "\"\n";
}

// ---- the fixture: one configuration file in a temporary folder, one daemon at a time ----

class Admin : public ::testing::Test {
 protected:
  fs::path config_file() const { return dir_.path() / "pb.toml"; }
  fs::path socket_path() const { return dir_.path() / "var" / "admin.sock"; }
  void write_config(const std::string& text) { dir_.write("pb.toml", text); }

  Balancer& start() {
    balancer_ = std::make_unique<Balancer>(std::vector<std::string>{"--config", config_file().string()});
    return *balancer_;
  }
  Balancer& balancer() { return *balancer_; }

  // Stops the daemon with SIGTERM; it must exit 0 and leave no socket behind.
  void stop() {
    balancer_->process().signal(SIGTERM);
    EXPECT_EQ(balancer_->process().wait_exit(in(15s)), 0) << balancer_->process().output();
    EXPECT_FALSE(fs::exists(fs::symlink_status(socket_path()))) << "socket left behind";
    balancer_.reset();
  }

  Outcome admin(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_file().string()});
    return run_pbadmin(args);
  }

  // The daemon's status document, through `pbadmin --json status`.
  json::object status() {
    const Outcome r = admin({"--json", "status"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    boost::system::error_code ec;
    json::value value = json::parse(r.out, ec);
    if (ec || !value.is_object()) {
      ADD_FAILURE() << "status is not a JSON object: " << r.out;
      return {};
    }
    return value.as_object();
  }

  static const json::object& find_named(const json::object& parent, std::string_view array,
                                        std::string_view name) {
    static const json::object none;
    for (const auto& item : parent.at(array).as_array()) {
      if (item.as_object().at("name").as_string() == name) return item.as_object();
    }
    ADD_FAILURE() << "no " << array << " entry named " << name << " in " << json::serialize(parent);
    return none;
  }
  static const json::object& node_of(const json::object& status, std::string_view cluster,
                                     std::string_view node) {
    return find_named(find_named(status, "clusters", cluster), "nodes", node);
  }
  static const json::object& listener_of(const json::object& status, std::string_view name) {
    return find_named(status, "listeners", name);
  }
  static std::int64_t number(const json::object& object, std::string_view key) {
    const json::value* value = object.if_contains(key);
    return value == nullptr ? -1 : value->to_number<std::int64_t>();
  }

  // Polls the status until `done` holds for it or the deadline passes; returns whether it held.
  bool wait_status(const std::function<bool(const json::object&)>& done, Deadline deadline) {
    for (;;) {
      if (done(status())) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(50ms);  // polling the daemon's counters, bounded by the deadline
    }
  }

  TempDir dir_;
  std::unique_ptr<Balancer> balancer_;
};

// Opens connections to `address` until one is answered by `node` (greet_echo backends say their
// name first); the others are closed. Fails the test after `attempts` connections.
Client connect_to_node(const std::string& address, const std::string& node, int attempts = 8) {
  for (int i = 0; i < attempts; ++i) {
    Client client(address);
    if (client.connected() && client.recv_line(in(5s)) == node) return client;
  }
  ADD_FAILURE() << "no connection to " << address << " reached node " << node;
  return Client{};
}

// Which node answers each of `n` new connections.
std::map<std::string, int> spread(const std::string& address, int n, const std::string& source = "") {
  std::map<std::string, int> seen;
  for (int i = 0; i < n; ++i) {
    Client client(address, 5s, source);
    ++seen[client.connected() ? client.recv_line(in(5s)) : "<refused>"];
  }
  return seen;
}

TEST_F(Admin, StatusNumbersMatchHeldConnections) {
  // Verifies that status reports the listener's bound address and route and, per node and per
  // listener, exactly the connections held open, and that the human table shows the same.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               node_table("b", b.address()) + listener_table("front", "web"));
  start();
  const std::string address = balancer().address("front");

  std::vector<Client> held;
  std::map<std::string, int> per_node;
  for (int i = 0; i < 5; ++i) {
    held.emplace_back(address);
    ASSERT_TRUE(held.back().connected());
    ++per_node[held.back().recv_line(in(5s))];
  }
  ASSERT_EQ(per_node["a"] + per_node["b"], 5);

  auto counts_match = [&](const json::object& s) {
    return number(listener_of(s, "front"), "active") == 5 &&
           number(node_of(s, "web", "a"), "active") == per_node["a"] &&
           number(node_of(s, "web", "b"), "active") == per_node["b"];
  };
  ASSERT_TRUE(wait_status(counts_match, in(10s))) << json::serialize(status());
  const json::object s = status();
  const auto& front = listener_of(s, "front");
  EXPECT_EQ(front.at("address").as_string(), address);
  EXPECT_EQ(front.at("cluster").as_string(), "web");
  EXPECT_EQ(front.at("configured_cluster").as_string(), "web");
  EXPECT_FALSE(front.at("routed").as_bool());
  EXPECT_EQ(number(front, "connections"), 5);
  const auto& web = find_named(s, "clusters", "web");
  EXPECT_EQ(web.at("algorithm").as_string(), "round_robin");
  EXPECT_FALSE(web.at("affinity").as_bool());
  const auto& node_a = node_of(s, "web", "a");
  EXPECT_EQ(node_a.at("address").as_string(), a.address());
  EXPECT_EQ(node_a.at("state").as_string(), "available");
  EXPECT_TRUE(node_a.at("up").as_bool());
  EXPECT_TRUE(node_a.at("since").is_null());
  EXPECT_EQ(number(node_a, "total"), per_node["a"]);
  EXPECT_EQ(number(node_a, "failures"), 0);
  EXPECT_EQ(number(node_a, "max_connections"), 0);
  EXPECT_EQ(number(node_a, "tier"), 1);
  EXPECT_EQ(node_a.at("load_factor").to_number<double>(), 1.0);
  EXPECT_TRUE(node_a.at("fallover").is_null());

  // The human table: aligned columns, colour-free words, the same numbers.
  const Outcome human = admin({"status"});
  ASSERT_EQ(human.exit_code, 0) << human.err;
  EXPECT_EQ(human.out.find('\x1b'), std::string::npos) << "no colour codes";
  const auto table = lines(human.out);
  ASSERT_GE(table.size(), 6u) << human.out;
  EXPECT_TRUE(std::regex_match(table[0], std::regex("LISTENER +ADDRESS +CLUSTER +ACTIVE +CONNECTIONS")))
      << table[0];
  EXPECT_TRUE(std::regex_match(table[1], std::regex("front +" + std::regex_replace(address, std::regex("\\."), "\\.") +
                                                    " +web +5 +5")))
      << table[1];
  EXPECT_NE(human.out.find("cluster web: round_robin, affinity off"), std::string::npos) << human.out;
  const std::regex node_row("  a +" + std::regex_replace(a.address(), std::regex("\\."), "\\.") +
                            " +available +up +" + std::to_string(per_node["a"]) + " +" +
                            std::to_string(per_node["a"]) + " +0 +0 +1 +- +1 +-");
  EXPECT_TRUE(std::regex_search(human.out, node_row)) << human.out;

  held.resize(2);  // closes three
  auto two_left = [&](const json::object& st) { return number(listener_of(st, "front"), "active") == 2; };
  EXPECT_TRUE(wait_status(two_left, in(10s))) << json::serialize(status());
}

TEST_F(Admin, DrainingKeepsOpenConnectionsWhileNewOnesGoElsewhere) {
  // Verifies that `node set ... draining` leaves a running connection working, sends every new
  // connection to the other node, and that status shows the drained node's count reach zero
  // once that connection closes.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               node_table("b", b.address()) + listener_table("front", "web"));
  start();
  const std::string address = balancer().address("front");
  Client open = connect_to_node(address, "a");
  ASSERT_TRUE(open.connected());

  const Outcome set = admin({"node", "set", "web", "a", "draining"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out, "node web/a: draining (was available)\n");
  EXPECT_EQ(set.err, "");

  EXPECT_EQ(spread(address, 6), (std::map<std::string, int>{{"b", 6}}));
  ASSERT_TRUE(open.send_all("still here"));
  EXPECT_EQ(open.recv_exact(10), "still here");

  json::object s = status();
  EXPECT_EQ(node_of(s, "web", "a").at("state").as_string(), "draining");
  EXPECT_EQ(number(node_of(s, "web", "a"), "active"), 1);
  open.close();
  auto drained = [&](const json::object& st) { return number(node_of(st, "web", "a"), "active") == 0; };
  EXPECT_TRUE(wait_status(drained, in(10s))) << json::serialize(status());
  // Colour words are accepted too.
  EXPECT_EQ(admin({"node", "set", "web", "a", "green"}).exit_code, 0);
  EXPECT_EQ(node_of(status(), "web", "a").at("state").as_string(), "available");
}

TEST_F(Admin, OfflineClosesOpenConnectionsAndAvailableBringsTheNodeBack) {
  // Verifies that `offline` (here as `red`) closes the node's running connections at once and
  // takes no new ones, and that `available` lets it take connections again.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               node_table("b", b.address()) + listener_table("front", "web"));
  start();
  const std::string address = balancer().address("front");
  Client on_a = connect_to_node(address, "a");
  Client on_b = connect_to_node(address, "b");
  ASSERT_TRUE(on_a.connected());
  ASSERT_TRUE(on_b.connected());

  const Outcome set = admin({"node", "set", "web", "a", "red"});
  ASSERT_EQ(set.exit_code, 0) << set.err;
  EXPECT_EQ(set.out, "node web/a: offline (was available)\n");
  EXPECT_NE(on_a.wait_closed(in(5s)), PeerClose::timeout) << "the offline node's connection stayed open";
  ASSERT_TRUE(on_b.send_all("ping"));
  EXPECT_EQ(on_b.recv_exact(4), "ping") << "the other node's connection must live on";
  EXPECT_EQ(spread(address, 4), (std::map<std::string, int>{{"b", 4}}));
  EXPECT_EQ(node_of(status(), "web", "a").at("state").as_string(), "offline");

  ASSERT_EQ(admin({"node", "set", "web", "a", "available"}).exit_code, 0);
  const auto seen = spread(address, 4);
  EXPECT_GE(seen.count("a") ? seen.at("a") : 0, 1) << "a takes connections again";
}

TEST_F(Admin, NodeStatesAndRoutesSurviveARestart) {
  // Verifies that a node state and a listener route set with pbadmin are in force again after
  // the daemon is stopped and started, and shown as such by status.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("blue") + node_table("a", a.address()) +
               node_table("a2", a.address()) + cluster_table("green") +
               node_table("b", b.address()) + listener_table("front", "blue"));
  start();
  ASSERT_EQ(admin({"node", "set", "blue", "a2", "offline"}).exit_code, 0);
  ASSERT_EQ(admin({"route", "front", "green"}).exit_code, 0);
  stop();

  start();
  const json::object s = status();
  EXPECT_EQ(node_of(s, "blue", "a2").at("state").as_string(), "offline");
  EXPECT_EQ(node_of(s, "blue", "a").at("state").as_string(), "available");
  const auto& front = listener_of(s, "front");
  EXPECT_EQ(front.at("cluster").as_string(), "green");
  EXPECT_EQ(front.at("configured_cluster").as_string(), "blue");
  EXPECT_TRUE(front.at("routed").as_bool());
  EXPECT_EQ(spread(balancer().address("front"), 3), (std::map<std::string, int>{{"b", 3}}));
}

TEST_F(Admin, ReloadAddsAndRemovesNodesAndListenersWithoutDroppingConnections) {
  // Verifies that `pbadmin reload` applies a new file (a node and a listener added, another of
  // each removed), prints what changed, and that a connection opened before keeps working.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               listener_table("old", "web"));
  start();
  const std::string old_address = balancer().address("old");
  Client before(old_address);
  ASSERT_TRUE(before.connected());
  ASSERT_EQ(before.recv_line(), "a");

  write_config(service_table() + cluster_table("web") + node_table("b", b.address()) +
               listener_table("new", "web"));
  const Outcome r = admin({"reload"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(lines(r.out).front(), "reloaded: 4 changes") << r.out;
  for (const std::string change : {"listener new added on 127.0.0.1:0", "listener old removed",
                                   "node web/b added", "node web/a removed"}) {
    EXPECT_NE(r.out.find("  " + change), std::string::npos) << change << " not in:\n" << r.out;
  }

  const json::object s = status();
  ASSERT_EQ(s.at("listeners").as_array().size(), 1u);
  const std::string new_address(listener_of(s, "new").at("address").as_string());
  const auto& nodes = find_named(s, "clusters", "web").at("nodes").as_array();
  ASSERT_EQ(nodes.size(), 1u);
  EXPECT_EQ(nodes[0].as_object().at("name").as_string(), "b");

  ASSERT_TRUE(before.send_all("still here"));
  EXPECT_EQ(before.recv_exact(10), "still here");
  EXPECT_EQ(spread(new_address, 3), (std::map<std::string, int>{{"b", 3}}));
  EXPECT_EQ(spread(old_address, 1), (std::map<std::string, int>{{"<refused>", 1}}));

  // Nothing changed since: said so.
  const Outcome again = admin({"reload"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_EQ(again.out, "reloaded: no changes\n");
}

TEST_F(Admin, SighupReloadShowsInStatus) {
  // Verifies that a reload by SIGHUP (as systemd's ExecReload does) is what status shows next.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  const std::string head = service_table() + cluster_table("web") + node_table("a", a.address());
  write_config(head + listener_table("front", "web"));
  start();
  write_config(head + node_table("b", b.address()) + listener_table("front", "web"));
  balancer().process().signal(SIGHUP);
  auto has_b = [&](const json::object& st) {
    return find_named(st, "clusters", "web").at("nodes").as_array().size() == 2;
  };
  EXPECT_TRUE(wait_status(has_b, in(10s))) << balancer().process().output();
}

// The service manager's side of sd_notify: a datagram socket named by NOTIFY_SOCKET, set in
// this test's environment so that the daemon started next inherits it.
class NotifyListener {
 public:
  // `name` is a path, or "@name" for the abstract namespace.
  explicit NotifyListener(const std::string& name) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::memcpy(address.sun_path, name.data(), name.size());
    if (name[0] == '@') address.sun_path[0] = '\0';
    const auto length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<const sockaddr*>(&address), length), 0)
        << std::strerror(errno);
    ::setenv("NOTIFY_SOCKET", name.c_str(), 1);
  }
  ~NotifyListener() {
    ::unsetenv("NOTIFY_SOCKET");
    ::close(fd_);
  }
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;

  // The next message, or "" when none came before `deadline`.
  std::string next(std::chrono::steady_clock::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(left.count(), 0))) != 1) return "";
    char buffer[256];
    const ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : "";
  }

 private:
  int fd_ = -1;
};

TEST_F(Admin, NotifiesTheServiceManagerOfReadyReloadingAndStopping) {
  // Verifies the Type=notify protocol on a socket path: READY=1 once the listeners are bound,
  // RELOADING=1 then READY=1 around a reload, STOPPING=1 when asked to stop.
  NotifyListener manager((dir_.path() / "notify.sock").string());
  Backend a("a", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               listener_table("front", "web"));
  start();
  EXPECT_EQ(manager.next(in(5s)), "READY=1");
  balancer().process().signal(SIGHUP);
  EXPECT_EQ(manager.next(in(5s)), "RELOADING=1");
  EXPECT_EQ(manager.next(in(5s)), "READY=1");
  balancer().process().signal(SIGTERM);
  EXPECT_EQ(manager.next(in(5s)), "STOPPING=1");
  EXPECT_EQ(balancer().process().wait_exit(in(15s)), 0) << balancer().process().output();
}

TEST(ServiceNotify, AbstractSocketNameAndNoSocketAtAll) {
  // Verifies that an abstract NOTIFY_SOCKET ("@name") gets READY=1, and that a daemon started
  // without NOTIFY_SOCKET, or with one nobody listens on, serves all the same.
  {
    NotifyListener manager("@protobalance-test-" + std::to_string(::getpid()));
    Backend node("n1");
    Balancer balancer({"--listen", "127.0.0.1:0", "--node", node.address()});
    EXPECT_EQ(manager.next(in(5s)), "READY=1");
  }
  Backend node("n1");
  ::setenv("NOTIFY_SOCKET", "@protobalance-test-nobody-listens", 1);
  Balancer balancer({"--listen", "127.0.0.1:0", "--node", node.address()});
  ::unsetenv("NOTIFY_SOCKET");
  Client client(balancer.address(), 2s);
  ASSERT_TRUE(client.send_all("ping"));
  EXPECT_EQ(client.recv_exact(4, in(5s)), "ping");
}

TEST_F(Admin, BadReloadKeepsTheOldConfigurationAndReportsThePosition) {
  // Verifies that reloading a file with an error exits 1 with FILE:LINE:COL: message on stderr,
  // and that the running configuration is untouched and keeps serving.
  Backend a("a", BackendMode::greet_echo);
  const std::string good = service_table() + cluster_table("web") + node_table("a", a.address()) +
                           listener_table("front", "web");
  write_config(good);
  start();
  // The last line of the new file: a node's address with a port out of range.
  const std::string bad = good + "[[cluster.node]]\nname = \"x\"\naddress = \"127.0.0.1:99999\"\n";
  ASSERT_EQ(lines(bad).size(), 18u);
  write_config(bad);
  const Outcome r = admin({"reload"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  const auto err = lines(r.err);
  ASSERT_EQ(err.size(), 1u) << r.err;
  EXPECT_TRUE(err[0].starts_with(config_file().string() + ":18:11: ")) << err[0];
  EXPECT_NE(err[0].find("port"), std::string::npos) << err[0];

  // --json: the daemon's whole answer, for scripts.
  const Outcome j = admin({"--json", "reload"});
  EXPECT_EQ(j.exit_code, 1);
  const json::value answer = json::parse(j.out);
  EXPECT_FALSE(answer.at("ok").as_bool());
  EXPECT_EQ(answer.at("errors").as_array().size(), 1u);

  const json::object s = status();
  EXPECT_EQ(find_named(s, "clusters", "web").at("nodes").as_array().size(), 1u);
  EXPECT_EQ(spread(balancer().address("front"), 2), (std::map<std::string, int>{{"a", 2}}));
}

TEST_F(Admin, RouteSendsNewConnectionsToAnotherClusterAndResetBringsThemBack) {
  // Verifies `route LISTENER CLUSTER` (new connections go to the other cluster, running ones
  // stay, status shows the route) and `route LISTENER --reset`.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("blue") + node_table("a", a.address()) +
               cluster_table("green") + node_table("b", b.address()) +
               listener_table("front", "blue"));
  start();
  const std::string address = balancer().address("front");
  Client running(address);
  ASSERT_EQ(running.recv_line(), "a");

  const Outcome away = admin({"route", "front", "green"});
  ASSERT_EQ(away.exit_code, 0) << away.err;
  EXPECT_EQ(away.out, "listener front: new connections go to cluster green (configured: blue)\n");
  EXPECT_EQ(spread(address, 3), (std::map<std::string, int>{{"b", 3}}));
  ASSERT_TRUE(running.send_all("ok?"));
  EXPECT_EQ(running.recv_exact(3), "ok?");
  const json::object after = status();
  const auto& routed = listener_of(after, "front");
  EXPECT_EQ(routed.at("cluster").as_string(), "green");
  EXPECT_TRUE(routed.at("routed").as_bool());
  const Outcome human = admin({"status"});
  EXPECT_NE(human.out.find("green (routed; configured: blue)"), std::string::npos) << human.out;

  const Outcome back = admin({"route", "front", "--reset"});
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(back.out, "listener front: new connections go to cluster blue (as configured)\n");
  EXPECT_EQ(spread(address, 3), (std::map<std::string, int>{{"a", 3}}));
  EXPECT_FALSE(listener_of(status(), "front").at("routed").as_bool());

  const Outcome unknown = admin({"route", "front", "purple"});
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_EQ(lines(unknown.err).size(), 1u) << unknown.err;
  EXPECT_NE(unknown.err.find("purple"), std::string::npos) << unknown.err;
}

TEST_F(Admin, SocketIsOwnerOnlyStaleOneReplacedLiveOneRefusedRemovedAtExit) {
  // Verifies the socket's life: a file left by a dead daemon is replaced at start; the socket
  // has mode 0600; a second daemon on the same socket refuses to start (exit 1, the path in the
  // message) and leaves the first one reachable; SIGTERM removes the socket.
  Backend a("a", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               listener_table("front", "web"));
  fs::create_directories(socket_path().parent_path());
  {
    // A socket file nobody listens on: what a killed daemon leaves.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof address.sun_path, "%s", socket_path().c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
    ::close(fd);
  }
  start();
  EXPECT_NE(balancer().process().output().find("replaced the stale socket"), std::string::npos);

  struct stat st{};
  ASSERT_EQ(::lstat(socket_path().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, ::getuid());

  Process second({binary("protobalance"), "--config", config_file().string()});
  const auto code = second.wait_exit(in(15s));
  second.drain_output();
  EXPECT_EQ(code, 1) << second.output();
  EXPECT_NE(second.output().find("admin socket " + socket_path().string() + ": another process answers"),
            std::string::npos)
      << second.output();
  EXPECT_EQ(admin({"status"}).exit_code, 0) << "the first daemon must still answer";

  stop();  // checks that the socket is gone
}

TEST_F(Admin, SocketThatCannotBeCreatedStopsTheStart) {
  // Verifies that an [admin] socket whose folder cannot exist (a file is in the way) makes the
  // daemon exit 1 at start with a message naming the socket, before it announces anything.
  Backend a("a", BackendMode::greet_echo);
  dir_.write("var/blocker", "a file, not a folder\n");
  write_config(service_table() + "[admin]\nsocket = \"blocker/admin.sock\"\n" +
               cluster_table("web") + node_table("a", a.address()) + listener_table("front", "web"));
  Process daemon({binary("protobalance"), "--config", config_file().string()});
  EXPECT_EQ(daemon.wait_exit(in(15s)), 1);
  daemon.drain_output();
  const std::string output = daemon.output();
  EXPECT_NE(output.find("admin socket " + (dir_.path() / "var/blocker/admin.sock").string() +
                        ": cannot create its folder"),
            std::string::npos)
      << output;
  EXPECT_EQ(output.find("serving with"), std::string::npos) << output;
}

TEST_F(Admin, UnusableStateDirRunsWithoutTheAdminApi) {
  // Verifies that when the whole state_dir cannot be used (a file in the way), the balancer
  // forwards anyway, as it does without its database, says why there is no admin API, and
  // pbadmin reports it unreachable (exit 3); and that SIGHUP starts the API once the folder
  // can be used.
  Backend a("a", BackendMode::greet_echo);
  dir_.write("var", "a file, not a folder\n");
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               listener_table("front", "web"));
  start();
  EXPECT_EQ(spread(balancer().address("front"), 2), (std::map<std::string, int>{{"a", 2}}));
  EXPECT_NE(balancer().process().output().find("runs without its admin API"), std::string::npos)
      << balancer().process().output();
  const Outcome r = admin({"status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
  EXPECT_TRUE(balancer().process().running());

  // The operator fixes the folder and reloads: the admin API starts without a restart.
  std::filesystem::remove(dir_.path() / "var");
  balancer().process().signal(SIGHUP);
  ASSERT_TRUE(balancer().process().wait_for(std::regex("admin API on "), in(5s)))
      << balancer().process().output();
  EXPECT_EQ(admin({"status"}).exit_code, 0);
}

TEST_F(Admin, WhileStoppingStatusAnswersAndChangesAreRefused) {
  // Verifies the admin API during a graceful stop: status still answers (an operator watches
  // the last connections end), changes are refused (exit 1), and the socket is removed when the
  // daemon exits after the last connection closed.
  Backend a("a", BackendMode::greet_echo);
  // A long shutdown_timeout: the held connection must outlive the three pbadmin runs below,
  // which take seconds on a loaded machine; closing it ends the stop at once.
  write_config("[service]\nthreads = 2\nstate_dir = \"var\"\nshutdown_timeout = \"60s\"\n" +
               cluster_table("web") + node_table("a", a.address()) +
               listener_table("front", "web"));
  start();
  Client held(balancer().address("front"));
  ASSERT_EQ(held.recv_line(), "a");
  balancer().process().signal(SIGTERM);
  ASSERT_TRUE(balancer().process().wait_for(std::regex("SIGTERM: stopping"), in(5s)));

  EXPECT_EQ(number(node_of(status(), "web", "a"), "active"), 1);
  const Outcome refused = admin({"node", "set", "web", "a", "draining"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.err.find("stopping"), std::string::npos) << refused.err;
  EXPECT_EQ(admin({"reload"}).exit_code, 1);

  held.close();
  EXPECT_EQ(balancer().process().wait_exit(in(10s)), 0);
  EXPECT_FALSE(fs::exists(fs::symlink_status(socket_path())));
}

TEST_F(Admin, EveryExitCode) {
  // Verifies pbadmin's exit codes with one line on stderr for each failure: 0 done, 1 refused by
  // the daemon, 2 usage or configuration error, 3 daemon unreachable (no socket, or a socket
  // nobody answers on).
  Backend a("a", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               listener_table("front", "web"));
  const auto one_line = [](const Outcome& r) { return lines(r.err).size() == 1u; };

  // 3: not started yet.
  Outcome r = admin({"status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(one_line(r)) << r.err;
  EXPECT_NE(r.err.find("no admin socket at " + socket_path().string()), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");

  start();
  r = admin({"status"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");

  // 1: the daemon refuses.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"node", "set", "web", "zeta", "offline"},
        std::vector<std::string>{"node", "set", "nope", "a", "offline"},
        std::vector<std::string>{"route", "nope", "web"},
        std::vector<std::string>{"affinity", "forget", "192.0.2.1"}}) {
    r = admin(args);
    EXPECT_EQ(r.exit_code, 1) << args[0] << ' ' << args[1] << ": " << r.err;
    EXPECT_TRUE(one_line(r)) << r.err;
    EXPECT_TRUE(r.err.starts_with("pbadmin: ")) << r.err;
  }
  r = admin({"node", "set", "web", "zeta", "offline"});
  EXPECT_NE(r.err.find("no node named zeta"), std::string::npos) << r.err;

  // 2: usage and configuration errors, decided before asking the daemon.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"node", "set", "web", "a", "purple"},
        std::vector<std::string>{"node", "set", "web"},
        std::vector<std::string>{"route", "front"},
        std::vector<std::string>{"route", "front", "web", "--reset"},
        std::vector<std::string>{"affinity", "pin", "192.0.2.1", "a"},
        std::vector<std::string>{"affinity", "forget", "not-an-address"},
        std::vector<std::string>{"frobnicate"}}) {
    r = admin(args);
    EXPECT_EQ(r.exit_code, 2) << args[0] << ": " << r.err;
    EXPECT_TRUE(one_line(r)) << r.err;
    EXPECT_EQ(r.out, "");
  }
  r = run_pbadmin({"--config", (dir_.path() / "absent.toml").string(), "status"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(one_line(r)) << r.err;

  // 3 again: the daemon was killed and left its socket behind; nothing answers on it.
  balancer().process().signal(SIGKILL);
  balancer().process().wait_exit(in(10s));
  ASSERT_TRUE(fs::exists(fs::symlink_status(socket_path())));
  r = admin({"status"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_TRUE(one_line(r)) << r.err;
  EXPECT_NE(r.err.find("nothing answers on"), std::string::npos) << r.err;
}

TEST_F(Admin, AffinityPinThenForget) {
  // Verifies that `affinity pin` sends a client's next connections to the pinned node, and that
  // after `affinity forget` the algorithm decides again (the hash algorithm: always the same
  // node for one client, so the difference is visible); and the refusals of pin.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web", "hash", true) + node_table("a", a.address()) +
               node_table("b", b.address()) + cluster_table("plain") +
               node_table("p", a.address()) + listener_table("front", "web"));
  start();
  const std::string address = balancer().address("front");
  const std::string client_ip = "127.0.0.7";

  // The algorithm's node for this client, then recorded as its affinity.
  const auto first = spread(address, 1, client_ip);
  ASSERT_EQ(first.size(), 1u);
  const std::string hashed = first.begin()->first;
  ASSERT_TRUE(hashed == "a" || hashed == "b") << hashed;
  const std::string other = hashed == "a" ? "b" : "a";

  Outcome r = admin({"affinity", "pin", client_ip, other, "--cluster", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "pinned " + client_ip + " to web/" + other + " (was " + hashed + ")\n");
  EXPECT_EQ(spread(address, 3, client_ip), (std::map<std::string, int>{{other, 3}}));

  r = admin({"affinity", "forget", client_ip});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "forgot " + client_ip + " in cluster web (was on " + other + ")\n");
  EXPECT_EQ(spread(address, 3, client_ip), (std::map<std::string, int>{{hashed, 3}}));

  // --json, and forget with a cluster and a network.
  r = admin({"--json", "affinity", "forget", "127.0.0.0/24", "--cluster", "web"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json::value forgotten = json::parse(r.out);
  ASSERT_EQ(forgotten.at("forgotten").as_array().size(), 1u) << r.out;
  EXPECT_EQ(forgotten.at("forgotten").as_array()[0].at("client").as_string(), client_ip);

  // Refusals: unknown node (1), cluster without affinity (1), not an address (2).
  r = admin({"affinity", "pin", client_ip, "zeta", "--cluster", "web"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("no node named zeta"), std::string::npos) << r.err;
  r = admin({"affinity", "pin", client_ip, "p", "--cluster", "plain"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("does not use client affinity"), std::string::npos) << r.err;
  r = admin({"affinity", "pin", "10.0.0.300", "a", "--cluster", "web"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(lines(r.err).size(), 1u) << r.err;
}

TEST_F(Admin, MalformedApiRequestsGetJsonErrorsAndTheDaemonStaysUp) {
  // Verifies the admin API's answers to bad requests sent by hand: malformed JSON 400, unknown
  // node 404, oversized body 413, a change through GET 405 with Allow, unknown path 404, garbage
  // 400, an oversized header 431 — each with a JSON {"error"} body — and that the daemon still
  // serves requests (two on one keep-alive connection) and connections afterwards.
  Backend a("a", BackendMode::greet_echo);
  write_config(service_table() + cluster_table("web") + node_table("a", a.address()) +
               listener_table("front", "web"));
  start();
  const auto put = [](const std::string& target, const std::string& body) {
    return "PUT " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  };
  struct Case {
    std::string name;
    std::string request;
    int status;
    std::string error_part;
  };
  const std::vector<Case> cases{
      {"bad JSON", put("/v1/clusters/web/nodes/a/state", "{\"state\": "), 400, "malformed JSON"},
      {"not an object", put("/v1/clusters/web/nodes/a/state", "[\"draining\"]"), 400, "JSON object"},
      {"unknown field", put("/v1/clusters/web/nodes/a/state", "{\"sate\":\"red\"}"), 400,
       "unknown field \"sate\""},
      {"bad state", put("/v1/clusters/web/nodes/a/state", "{\"state\":\"blue\"}"), 400,
       "state must be one of"},
      {"unknown node", put("/v1/clusters/web/nodes/zeta/state", "{\"state\":\"offline\"}"), 404,
       "no node named zeta"},
      {"oversized body", put("/v1/affinity", std::string(100 * 1024, 'x')), 413, "too large"},
      {"change via GET", "GET /v1/reload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 405,
       "not allowed"},
      {"unknown path", "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404,
       "no resource /v1/nothing"},
      {"garbage", "HELLO THERE\r\n\r\n", 400, "malformed HTTP request"},
      {"oversized header",
       "GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(16 * 1024, 'y') + "\r\n\r\n", 431,
       "header too large"},
  };
  for (const Case& c : cases) {
    const RawReply reply = raw_exchange(socket_path(), c.request);
    EXPECT_EQ(reply.status, c.status) << c.name << ": " << reply.head;
    EXPECT_NE(reply.head.find("Content-Type: application/json"), std::string::npos) << c.name;
    EXPECT_NE(error_of(reply.body).find(c.error_part), std::string::npos)
        << c.name << ": " << reply.body;
    if (c.status == 405) {
      EXPECT_NE(reply.head.find("\r\nAllow: POST"), std::string::npos) << reply.head;
    }
  }
  EXPECT_EQ(node_of(status(), "web", "a").at("state").as_string(), "available")
      << "no bad request may change anything";

  // Keep-alive: two requests on one connection, two answers.
  const RawReply both = raw_exchange(
      socket_path(),
      "GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(both.status, 200);
  EXPECT_NE(both.body.find("HTTP/1.1 200 OK"), std::string::npos) << "second answer missing";

  EXPECT_TRUE(balancer().process().running());
  EXPECT_EQ(spread(balancer().address("front"), 2), (std::map<std::string, int>{{"a", 2}}));
}

TEST(AdminQuickMode, NoAdminSocketWithoutAConfigurationFile) {
  // Verifies that quick mode (no configuration file) starts no admin API: no socket appears in
  // the state_dir it would use.
  Backend a("a", BackendMode::greet_echo);
  TempDir dir;
  Balancer balancer({"--listen", "127.0.0.1:0", "--node", a.address()},
                    ProcessOptions{.working_dir = dir.path()});
  EXPECT_EQ(spread(balancer.address(), 1), (std::map<std::string, int>{{"a", 1}}));
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir.path() / "var" / "admin.sock")));
  EXPECT_EQ(balancer.process().output().find("admin API"), std::string::npos);
}

// Finds a program in PATH; empty when absent.
std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path == nullptr ? "/usr/bin:/bin" : path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const fs::path candidate = fs::path(dir) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

TEST(SystemdUnit, VerifiesCleanWithSystemdAnalyze) {
  // Verifies that config/protobalance.service passes `systemd-analyze verify` without a single
  // complaint once ExecStart points at a binary that exists (the shipped unit names
  // /usr/local/bin, where `cmake --install` puts it), that it has the options the service needs,
  // and that the check does catch a broken unit.
  const std::string analyze = find_program("systemd-analyze");
  if (analyze.empty()) GTEST_SKIP() << "systemd-analyze is not installed on this machine";

  std::ifstream unit_file(std::string(PB_SOURCE_DIR) + "/config/protobalance.service");
  ASSERT_TRUE(unit_file) << "config/protobalance.service not found";
  std::stringstream text;
  text << unit_file.rdbuf();
  const std::string unit = text.str();
  for (const std::string option :
       {"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "LimitNOFILE=", "StateDirectory=",
        "NoNewPrivileges=yes", "ProtectSystem=strict"}) {
    EXPECT_NE(unit.find("\n" + option), std::string::npos) << option;
  }
  const std::string rewritten =
      std::regex_replace(unit, std::regex("/usr/local/bin/protobalance"), binary("protobalance"));
  ASSERT_NE(rewritten, unit) << "ExecStart no longer names /usr/local/bin/protobalance";

  TempDir dir;
  const auto good = dir.write("protobalance.service", rewritten);
  const RunResult ok = run({analyze, "verify", good.string()}, in(60s));
  if (ok.exit_code != 0 && ok.output.find("Failed to") != std::string::npos &&
      ok.output.find(good.filename().string()) == std::string::npos) {
    GTEST_SKIP() << "systemd-analyze cannot run here: " << ok.output;
  }
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_EQ(ok.output, "") << "systemd-analyze complained";

  // The same check notices a mistake, so the clean result above means something.
  const auto bad = dir.write("broken.service",
                             std::regex_replace(rewritten, std::regex("\nNoNewPrivileges=yes"),
                                                "\nNoNewPrivilege=yes"));
  const RunResult complaint = run({analyze, "verify", bad.string()}, in(60s));
  EXPECT_NE(complaint.output.find("NoNewPrivilege"), std::string::npos) << complaint.output;
}

}  // namespace
}  // namespace pb::test
