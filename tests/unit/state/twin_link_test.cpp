// TwinLink against a real redis-server (tests/support/redis_server.hpp).
#include "protobalance/state/twin_link.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/process.hpp"
#include "support/redis_server.hpp"

namespace pb::state {
namespace {

using namespace std::chrono_literals;
using test::in;

// Polls `condition` every 10 ms until it holds or the deadline passes.
bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 20s) {
  const auto deadline = in(limit);
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Everything a link's callbacks reported, under a lock.
struct Recorder {
  std::mutex mutex;
  std::vector<TwinMessage> messages;
  std::vector<AffinityEntry> conflicts;
  std::vector<AffinityEntry> local;  // what the snapshot callback hands out
  std::vector<BlocksRead> rereads;

  TwinCallbacks callbacks() {
    TwinCallbacks c;
    c.on_message = [this](const TwinMessage& m) {
      std::lock_guard lock(mutex);
      messages.push_back(m);
    };
    c.on_conflict = [this](const AffinityEntry& e) {
      std::lock_guard lock(mutex);
      conflicts.push_back(e);
    };
    c.on_reread = [this](const BlocksRead& read) {
      std::lock_guard lock(mutex);
      rereads.push_back(read);
    };
    c.snapshot = [this](const std::function<void(const AffinityEntry&)>& emit) {
      std::vector<AffinityEntry> copy;
      {
        std::lock_guard lock(mutex);
        copy = local;
      }
      for (const AffinityEntry& e : copy) emit(e);
    };
    return c;
  }
  // The node an affinity/pin message (or re-read entry) told for `key`, or "" if none yet.
  std::string learned(const std::string& key) {
    std::lock_guard lock(mutex);
    for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
      if ((it->kind == TwinMessage::Kind::affinity || it->kind == TwinMessage::Kind::pin) &&
          it->affinity.key == key) {
        return it->affinity.node;
      }
    }
    return {};
  }
  std::size_t reread_count() {
    std::lock_guard lock(mutex);
    return rereads.size();
  }
  BlocksRead last_reread() {
    std::lock_guard lock(mutex);
    return rereads.empty() ? BlocksRead{} : rereads.back();
  }
  BlocksRead reread(std::size_t i) {
    std::lock_guard lock(mutex);
    return i < rereads.size() ? rereads[i] : BlocksRead{};
  }
  std::size_t count(TwinMessage::Kind kind) {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (const TwinMessage& m : messages) n += m.kind == kind ? 1 : 0;
    return n;
  }
};

config::TwinConfig twin_config(const test::RedisServer& redis, const std::string& instance) {
  config::TwinConfig c;
  c.enabled = true;
  c.redis = redis.address();
  c.port = redis.port();
  c.instance = instance;
  c.key_prefix = "test:";
  return c;
}

AffinityEntry entry(std::string key, std::string node) {
  return {"web", std::move(key), std::move(node), std::chrono::system_clock::now(), 3600s};
}

bool up(const TwinLink& link) {
  const TwinStats s = link.stats();
  return s.connected && s.subscribed;
}

// Runs a lookup and waits (with a deadline) for its answer.
LookupResult lookup(TwinLink& link, const std::string& key, std::chrono::milliseconds timeout) {
  auto promise = std::make_shared<std::promise<LookupResult>>();
  auto future = promise->get_future();
  link.lookup_affinity("web", key, timeout,
                       [promise](const LookupResult& r) { promise->set_value(r); });
  if (future.wait_for(10s) != std::future_status::ready) {
    ADD_FAILURE() << "lookup not answered within 10 s";
    return {LookupResult::Status::unavailable, {}};
  }
  return future.get();
}

// A client key with bytes that text formats often mishandle.
const std::string kKey{"\x00\x01\xff client", 11};

TEST(TwinLink, TwinsSeeEachOthersAffinityDecisions) {
  // Verifies that an entry published by one link reaches the other by subscription with the
  // same binary key and node, is found by the other's lookup, and is counted on both sides.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder ra;
  Recorder rb;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  TwinLink b(twin_config(redis, "lb-b"), rb.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a) && up(b); }));

  a.publish_affinity(entry(kKey, "node2"));
  ASSERT_TRUE(eventually([&] { return rb.learned(kKey) == "node2"; }));
  EXPECT_EQ(ra.learned(kKey), "") << "a link must ignore its own messages";
  const LookupResult found = lookup(b, kKey, 1000ms);
  EXPECT_EQ(found.status, LookupResult::Status::hit);
  EXPECT_EQ(found.node, "node2");

  const TwinStats sa = a.stats();
  const TwinStats sb = b.stats();
  EXPECT_GE(sa.messages_sent, 1u);
  EXPECT_GE(sb.messages_received, 1u);
  EXPECT_EQ(sb.lookups_hit, 1u);
  ASSERT_EQ(sb.instances.size(), 1u);
  EXPECT_EQ(sb.instances[0].first, "lb-a");
}

TEST(TwinLink, FirstWriterWinsBetweenConcurrentPublishers) {
  // Verifies that when two links publish different nodes for the same new clients at the same
  // moment, exactly one write wins per client, the loser learns the winner's node through
  // on_conflict, and both links' lookups then agree.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder ra;
  Recorder rb;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  TwinLink b(twin_config(redis, "lb-b"), rb.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a) && up(b); }));

  constexpr int kClients = 20;
  std::thread ta([&] {
    for (int i = 0; i < kClients; ++i) a.publish_affinity(entry("c" + std::to_string(i), "node1"));
  });
  std::thread tb([&] {
    for (int i = 0; i < kClients; ++i) b.publish_affinity(entry("c" + std::to_string(i), "node2"));
  });
  ta.join();
  tb.join();
  ASSERT_TRUE(eventually([&] { return a.stats().conflicts + b.stats().conflicts == kClients; }))
      << "conflicts: " << a.stats().conflicts + b.stats().conflicts;
  for (int i = 0; i < kClients; ++i) {
    const std::string key = "c" + std::to_string(i);
    const LookupResult la = lookup(a, key, 1000ms);
    const LookupResult lb = lookup(b, key, 1000ms);
    ASSERT_EQ(la.status, LookupResult::Status::hit);
    EXPECT_EQ(la.node, lb.node) << key;
  }
  // Each conflict names the node of the other writer.
  std::lock_guard la(ra.mutex);
  std::lock_guard lb(rb.mutex);
  for (const AffinityEntry& e : ra.conflicts) EXPECT_EQ(e.node, "node2");
  for (const AffinityEntry& e : rb.conflicts) EXPECT_EQ(e.node, "node1");
}

TEST(TwinLink, LookupAnswersHitMissAndTimeout) {
  // Verifies the three answers of a lookup: miss for an unknown client, hit after a publish, and
  // timeout, no later than well after the deadline, when Redis is frozen with SIGSTOP.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder ra;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a); }));

  EXPECT_EQ(lookup(a, "unknown", 1000ms).status, LookupResult::Status::miss);
  a.publish_affinity(entry("known", "node3"));
  ASSERT_TRUE(
      eventually([&] { return lookup(a, "known", 1000ms).status == LookupResult::Status::hit; }));

  redis.pause();
  const auto start = std::chrono::steady_clock::now();
  const LookupResult frozen = lookup(a, "known", 100ms);
  const auto took = std::chrono::steady_clock::now() - start;
  redis.resume();
  EXPECT_EQ(frozen.status, LookupResult::Status::timeout);
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 3s) << "the answer must come at the deadline, not when Redis answers";
  const TwinStats s = a.stats();
  EXPECT_EQ(s.lookups_miss, 1u);
  EXPECT_GE(s.lookups_hit, 1u);
  EXPECT_EQ(s.lookups_timeout, 1u);
  // After the thaw the link still works.
  EXPECT_TRUE(eventually([&] { return lookup(a, "known", 1000ms).node == "node3"; }));
}

TEST(TwinLink, RedisRestartedEmptyGetsWhatTheTwinsHold) {
  // Verifies that after Redis is killed and restarted empty, the links reconnect, publish again
  // what they hold locally (including what was decided during the outage), and that a twin
  // started afterwards learns those entries by the re-read.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder ra;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a); }));
  {
    std::lock_guard lock(ra.mutex);
    ra.local.push_back(entry("before", "node1"));
  }
  a.publish_affinity(entry("before", "node1"));
  ASSERT_TRUE(
      eventually([&] { return lookup(a, "before", 1000ms).status == LookupResult::Status::hit; }));

  redis.kill();
  ASSERT_TRUE(eventually([&] { return !a.stats().connected; }));
  EXPECT_EQ(lookup(a, "before", 100ms).status, LookupResult::Status::unavailable);
  {
    std::lock_guard lock(ra.mutex);
    ra.local.push_back(entry("during", "node2"));  // decided alone during the outage
  }
  ASSERT_TRUE(redis.restart());
  ASSERT_TRUE(eventually([&] { return up(a); }));
  EXPECT_TRUE(eventually([&] { return lookup(a, "during", 1000ms).node == "node2"; }));
  EXPECT_TRUE(eventually([&] { return lookup(a, "before", 1000ms).node == "node1"; }));

  Recorder rc;
  TwinLink c(twin_config(redis, "lb-c"), rc.callbacks());
  EXPECT_TRUE(eventually(
      [&] { return rc.learned("before") == "node1" && rc.learned("during") == "node2"; }));
}

TEST(TwinLink, ReReadTellsTheBlocksInRedisAndWhetherRedisKeptItsData) {
  // Verifies on_reread: the first re-read of a link is not `continuous` (nothing to compare
  // with); after a reconnection to the same Redis it is, lists every instance's blocks, misses
  // one a twin lifted meanwhile and has the one this link made while cut off (sent before the
  // re-read); after Redis restarted empty it is not `continuous` again but `redis_lost_data`,
  // which neither the first re-read nor the one after a reconnection to the same Redis is.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  // redis-cli; `auth` once the password is set.
  const auto cli = [&](std::vector<std::string> args, bool auth = false) {
    if (auth) args.insert(args.begin(), {"-a", "sesame", "--no-auth-warning"});
    args.insert(args.begin(), {"/usr/bin/redis-cli", "-p", std::to_string(redis.port())});
    return test::run(args).output;
  };
  Recorder ra;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a) && ra.reread_count() == 1; }));
  EXPECT_FALSE(ra.last_reread().continuous);
  EXPECT_FALSE(ra.last_reread().redis_lost_data);
  std::vector<std::string> a_clients;  // a's command and subscriber connections
  {
    std::istringstream lines(cli({"CLIENT", "LIST"}));
    for (std::string line; std::getline(lines, line);) {
      if (line.find("cmd=client|list") == std::string::npos && line.rfind("id=", 0) == 0) {
        a_clients.push_back(line.substr(3, line.find(' ') - 3));
      }
    }
  }
  ASSERT_EQ(a_clients.size(), 2u);
  Recorder rb;
  TwinLink b(twin_config(redis, "lb-b"), rb.callbacks());
  ASSERT_TRUE(eventually([&] { return up(b); }));
  b.publish_block("192.0.2.7", {});
  a.publish_block("192.0.2.8", {});
  ASSERT_TRUE(eventually([&] { return ra.count(TwinMessage::Kind::block) == 1; }));
  ASSERT_TRUE(eventually([&] { return cli({"EXISTS", "test:b:192.0.2.8"}) == "1\n"; }));

  ASSERT_EQ(cli({"CONFIG", "SET", "requirepass", "sesame"}), "OK\n");
  for (const auto& id : a_clients) cli({"CLIENT", "KILL", "ID", id}, true);
  ASSERT_TRUE(eventually([&] { return !a.stats().connected && !a.stats().subscribed; }));
  const std::size_t before = ra.reread_count();
  b.publish_unblock("192.0.2.7");
  ASSERT_TRUE(eventually([&] { return cli({"EXISTS", "test:b:192.0.2.7"}, true) == "0\n"; }));
  a.publish_block("192.0.2.9", {});  // made while cut off
  const auto restored = std::chrono::steady_clock::now();
  ASSERT_EQ(cli({"CONFIG", "SET", "requirepass", ""}, true), "OK\n");
  ASSERT_TRUE(eventually([&] { return up(a) && ra.reread_count() > before; }));
  const BlocksRead read = ra.reread(before);  // the first after the reconnection
  EXPECT_TRUE(read.continuous);
  EXPECT_FALSE(read.redis_lost_data);
  EXPECT_EQ(read.subjects, (std::set<std::string>{"192.0.2.8", "192.0.2.9"}));
  EXPECT_GT(read.read_from, restored);
  EXPECT_EQ(ra.count(TwinMessage::Kind::unblock), 0u);  // not heard: only the re-read tells

  redis.kill();
  ASSERT_TRUE(eventually([&] { return !a.stats().connected; }));
  const std::size_t before_restart = ra.reread_count();
  ASSERT_TRUE(redis.restart());
  ASSERT_TRUE(eventually([&] { return up(a) && ra.reread_count() > before_restart; }));
  const BlocksRead after_restart = ra.reread(before_restart);
  EXPECT_FALSE(after_restart.continuous);
  EXPECT_TRUE(after_restart.redis_lost_data);
  EXPECT_TRUE(after_restart.subjects.empty());
}

TEST(TwinLink, StatesRoutesBlocksForgetAndPinReachTheTwins) {
  // Verifies that node states, routes (set and reset), blocks, unblocks, forget and pin are
  // delivered to the other link with their fields, and that forget removes the entry.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder ra;
  Recorder rb;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  TwinLink b(twin_config(redis, "lb-b"), rb.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a) && up(b); }));

  a.publish_node_state("web", "node1", "draining");
  a.publish_route("api", "web2");
  a.publish_route("api", "");
  const auto until = std::chrono::system_clock::now() + 1h;
  a.publish_block("192.0.2.0/24", until);
  a.publish_unblock("192.0.2.0/24");
  a.publish_affinity(entry("k", "node1"));
  a.publish_pin(entry("k", "node4"));
  a.publish_forget("web", "k");
  ASSERT_TRUE(eventually([&] { return rb.count(TwinMessage::Kind::forget) == 1; }));

  std::lock_guard lock(rb.mutex);
  ASSERT_EQ(rb.messages.size(), 8u);
  const auto& m = rb.messages;
  EXPECT_EQ(m[0].kind, TwinMessage::Kind::node_state);
  EXPECT_EQ(m[0].cluster + "/" + m[0].node + "=" + m[0].state, "web/node1=draining");
  EXPECT_EQ(m[1].kind, TwinMessage::Kind::route);
  EXPECT_EQ(m[1].name + "->" + m[1].target, "api->web2");
  EXPECT_EQ(m[2].kind, TwinMessage::Kind::route);
  EXPECT_EQ(m[2].target, "");
  EXPECT_EQ(m[3].kind, TwinMessage::Kind::block);
  EXPECT_EQ(m[3].name, "192.0.2.0/24");
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::seconds>(m[3].until.time_since_epoch()),
            std::chrono::duration_cast<std::chrono::seconds>(until.time_since_epoch()));
  EXPECT_EQ(m[4].kind, TwinMessage::Kind::unblock);
  EXPECT_EQ(m[5].kind, TwinMessage::Kind::affinity);
  EXPECT_EQ(m[6].kind, TwinMessage::Kind::pin);
  EXPECT_EQ(m[6].affinity.node, "node4");
  EXPECT_EQ(m[7].affinity.key, "k");
  for (const TwinMessage& msg : m) EXPECT_EQ(msg.instance, "lb-a");
  EXPECT_EQ(lookup(b, "k", 1000ms).status, LookupResult::Status::miss);
}

TEST(TwinLink, MalformedMessagesOnTheChannelAreIgnored) {
  // Verifies that texts on the twins' channel that are not messages of the format (another
  // version, an unknown kind, a field missing, a key that is not hex, a time that is not one) are
  // neither delivered nor counted, and that the link keeps delivering: a well-formed message
  // published after them by someone else (here redis-cli) arrives alone, with its fields.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder rb;
  TwinLink b(twin_config(redis, "lb-b"), rb.callbacks());
  ASSERT_TRUE(eventually([&] { return up(b); }));
  const auto publish = [&](const std::string& text) {
    return test::run({"/usr/bin/redis-cli", "-p", std::to_string(redis.port()), "PUBLISH",
                      "test:events", text})
        .output;
  };
  for (const std::string& text :
       std::vector<std::string>{"", "2 lb-x n web node1 offline", "1 lb-x z web",
                                "1 lb-x n web node1", "1 lb-x f web 0g",
                                "1 lb-x a web 6b node1 soon 60",
                                "1 lb-x a web 6b node1 1 60 extra", "1 lb-x u"}) {
    ASSERT_EQ(publish(text), "1\n") << text;  // b is subscribed: one receiver
  }
  ASSERT_EQ(publish("1 lb-x n web node1 offline"), "1\n");
  ASSERT_TRUE(eventually([&] { return rb.count(TwinMessage::Kind::node_state) == 1; }));
  EXPECT_EQ(b.stats().messages_received, 1u);
  std::lock_guard lock(rb.mutex);
  ASSERT_EQ(rb.messages.size(), 1u);
  EXPECT_EQ(rb.messages[0].instance, "lb-x");
  EXPECT_EQ(rb.messages[0].cluster + "/" + rb.messages[0].node + "=" + rb.messages[0].state,
            "web/node1=offline");
}

// A counter from `redis-cli INFO stats` (e.g. total_connections_received); -1 if not found.
long redis_stat(const test::RedisServer& redis, const std::string& name) {
  const std::string cmd =
      "redis-cli -h 127.0.0.1 -p " + std::to_string(redis.port()) + " INFO stats";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return -1;
  long value = -1;
  char line[512];
  while (std::fgets(line, sizeof line, pipe) != nullptr) {
    const std::string text(line);
    if (text.rfind(name + ":", 0) == 0) value = std::stol(text.substr(name.size() + 1));
  }
  ::pclose(pipe);
  return value;
}

TEST(TwinLink, QueuedBurstIsAnsweredInOrderOverOneConnection) {
  // Verifies the pipelined path: a burst of lookups and first-writer-wins writes queued while
  // Redis does not answer (frozen) is sent as batches once it answers again; every lookup is
  // answered exactly once, in the order asked, with the right answer; every write lost to the
  // twin reports the twin's node; nothing reconnects.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder ra;
  Recorder rb;
  TwinLink a(twin_config(redis, "lb-a"), ra.callbacks());
  TwinLink b(twin_config(redis, "lb-b"), rb.callbacks());
  ASSERT_TRUE(eventually([&] { return up(a) && up(b); }));
  constexpr int kClients = 300;
  // The twin decides the even clients first.
  for (int i = 0; i < kClients; i += 2) {
    b.publish_affinity(entry("c" + std::to_string(i), "node-b"));
  }
  ASSERT_TRUE(eventually([&] {
    return lookup(b, "c" + std::to_string(kClients - 2), 1000ms).status ==
           LookupResult::Status::hit;
  }));
  const long connections = redis_stat(redis, "total_connections_received");
  ASSERT_GT(connections, 0);

  std::mutex mutex;
  std::vector<std::pair<int, LookupResult>> answers;
  redis.pause();
  for (int i = 0; i < kClients; ++i) {
    const std::string key = "c" + std::to_string(i);
    a.lookup_affinity("web", key, 20s, [&mutex, &answers, i](const LookupResult& r) {
      std::lock_guard lock(mutex);
      answers.emplace_back(i, r);
    });
    a.publish_affinity(entry(key, "node-a"));
  }
  redis.resume();
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(mutex);
    return answers.size() == kClients;
  }));
  ASSERT_TRUE(eventually([&] { return a.stats().conflicts == kClients / 2; }))
      << "conflicts: " << a.stats().conflicts;
  {
    std::lock_guard lock(mutex);
    for (int i = 0; i < kClients; ++i) {
      ASSERT_EQ(answers[i].first, i) << "answers out of order";
      if (i % 2 == 0) {
        EXPECT_EQ(answers[i].second.status, LookupResult::Status::hit) << i;
        EXPECT_EQ(answers[i].second.node, "node-b") << i;
      } else {
        EXPECT_EQ(answers[i].second.status, LookupResult::Status::miss) << i;
      }
    }
  }
  {
    std::lock_guard lock(ra.mutex);
    for (const AffinityEntry& e : ra.conflicts) EXPECT_EQ(e.node, "node-b");
  }
  // The odd clients were won by this link and published to the twin, in order.
  EXPECT_TRUE(eventually([&] { return rb.count(TwinMessage::Kind::affinity) == kClients / 2; }));
  {
    std::lock_guard lock(rb.mutex);
    for (std::size_t i = 0; i < rb.messages.size(); ++i) {
      EXPECT_EQ(rb.messages[i].affinity.key, "c" + std::to_string(2 * i + 1));
      EXPECT_EQ(rb.messages[i].affinity.node, "node-a");
    }
  }
  const TwinStats s = a.stats();
  EXPECT_EQ(s.messages_sent, static_cast<std::uint64_t>(kClients / 2));
  EXPECT_EQ(s.lookups_hit + s.lookups_miss, static_cast<std::uint64_t>(kClients));
  EXPECT_EQ(redis_stat(redis, "total_connections_received"), connections + 1)
      << "only the INFO client itself may have connected";
}

TEST(TwinLink, WrongPasswordIsAClearError) {
  // Verifies that a refused password leaves the link disconnected with an error naming AUTH,
  // answers lookups at once, and that the right password connects.
  test::RedisServer redis("right-password");
  ASSERT_TRUE(redis.ready());
  test::TempDir dir;
  Recorder r;
  config::TwinConfig wrong = twin_config(redis, "lb-a");
  wrong.password_file = dir.write("wrong.pass", "wrong-password\n");
  TwinLink bad(wrong, r.callbacks());
  ASSERT_TRUE(eventually([&] { return !bad.stats().last_error.empty(); }));
  const TwinStats s = bad.stats();
  EXPECT_FALSE(s.connected);
  EXPECT_NE(s.last_error.find("refused the password (AUTH)"), std::string::npos) << s.last_error;
  EXPECT_EQ(lookup(bad, "x", 1000ms).status, LookupResult::Status::unavailable);

  config::TwinConfig right = twin_config(redis, "lb-b");
  right.password_file = dir.write("right.pass", "right-password\n");
  TwinLink good(right, r.callbacks());
  EXPECT_TRUE(eventually([&] { return up(good); }));
}

TEST(TwinLink, WrongDatabaseAndNonRedisServerAreClearErrors) {
  // Verifies that a database Redis refuses and a server that does not speak Redis are reported.
  test::RedisServer redis;
  ASSERT_TRUE(redis.ready());
  Recorder r;
  config::TwinConfig db = twin_config(redis, "lb-a");
  db.database = 100000;
  TwinLink bad_db(db, r.callbacks());
  ASSERT_TRUE(eventually([&] { return !bad_db.stats().last_error.empty(); }));
  EXPECT_NE(bad_db.stats().last_error.find("refused database 100000"), std::string::npos)
      << bad_db.stats().last_error;

  // A TCP server that accepts (through its backlog) and never speaks Redis.
  const int silent = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(silent, 8), 0);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  config::TwinConfig other = twin_config(redis, "lb-b");
  other.port = ntohs(addr.sin_port);
  other.redis = "127.0.0.1:" + std::to_string(other.port);
  {
    TwinLink not_redis(other, r.callbacks());
    EXPECT_TRUE(eventually([&] { return !not_redis.stats().last_error.empty(); }));
    EXPECT_NE(not_redis.stats().last_error.find("no answer to PING from " + other.redis),
              std::string::npos)
        << not_redis.stats().last_error;
    EXPECT_FALSE(not_redis.stats().connected);
  }
  ::close(silent);
}

}  // namespace
}  // namespace pb::state
