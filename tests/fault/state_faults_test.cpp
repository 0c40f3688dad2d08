// The fault suite, part 2: faults of the persistent state (kill -9 with affinity on, a read-only
// state directory, a full disk, a database locked by another process). Observed through
// client connections, metrics, `pbadmin affinity list` and the database file itself.
#include <fcntl.h>
#include <signal.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include <boost/json/parse.hpp>
#include <gtest/gtest.h>

#include "fault/fault_common.hpp"
#include "support/backend.hpp"

namespace pb::test::fault {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWriteErrors = "protobalance_store_write_errors_total";

// client -> node, as `pbadmin affinity list --json` shows the database (nullopt if it fails).
std::optional<std::map<std::string, std::string>> listed(const fs::path& config) {
  const RunResult result =
      run({binary("pbadmin"), "--config", config.string(), "--json", "affinity", "list"}, in(30s));
  const auto start = result.output.find('[');
  if (result.exit_code != 0 || start == std::string::npos) return std::nullopt;
  std::map<std::string, std::string> entries;
  boost::system::error_code ec;
  const auto value = boost::json::parse(result.output.substr(start), ec);
  if (ec || !value.is_array()) return std::nullopt;
  for (const auto& row : value.as_array()) {
    const auto& object = row.as_object();
    entries[std::string(object.at("client").as_string())] = std::string(object.at("node").as_string());
  }
  return entries;
}

// "ok" when SQLite finds the file sound, else what it found.
std::string integrity(const fs::path& db) {
  sqlite3* handle = nullptr;
  if (sqlite3_open_v2(db.c_str(), &handle, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    const std::string why = handle ? sqlite3_errmsg(handle) : "cannot open";
    sqlite3_close(handle);
    return why;
  }
  std::string result;
  sqlite3_stmt* statement = nullptr;
  if (sqlite3_prepare_v2(handle, "PRAGMA integrity_check", -1, &statement, nullptr) == SQLITE_OK) {
    while (sqlite3_step(statement) == SQLITE_ROW) {
      result += reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    }
  } else {
    result = sqlite3_errmsg(handle);
  }
  sqlite3_finalize(statement);
  sqlite3_close(handle);
  return result;
}

// Serves one connection from each of `n` new clients (sources from `group`); returns how many
// were served by a node.
int serve_clients(const std::string& address, int group, int n) {
  int served = 0;
  for (int i = 0; i < n; ++i) {
    Client client(address, 5s, client_source(group, static_cast<std::uint64_t>(i)));
    served += client.connected() && !client.recv_line(in(5s)).empty();
  }
  return served;
}

// Whether every client of `group` (0..n-1) is in the database.
bool all_listed(const fs::path& config, int group, int n) {
  const auto entries = listed(config);
  if (!entries) return false;
  for (int i = 0; i < n; ++i) {
    if (!entries->count(client_source(group, static_cast<std::uint64_t>(i)))) return false;
  }
  return true;
}

// Three greeting nodes, affinity on, metrics on.
struct StateFixture {
  Backend a{"a", BackendMode::greet_echo};
  Backend b{"b", BackendMode::greet_echo};
  Backend c{"c", BackendMode::greet_echo};
  TempDir dir;
  fs::path file;
  fs::path state = dir.path() / "state";

  StateFixture() {
    // Affinity on: a table of the last [[cluster]] (the only one).
    const std::string text = config_text({{"a", a.address()}, {"b", b.address()}, {"c", c.address()}},
                                         "round_robin", "threads = 2\n", "");
    const std::string marker = "[[cluster.node]]";
    std::string with_affinity = text;
    with_affinity.insert(text.find(marker), "[cluster.affinity]\nenabled = true\n");
    file = dir.write("pb.toml", with_affinity);
  }
};

TEST(Fault, Kill9UnderLoadKeepsEveryAffinityEntryOlderThanOneSecond) {
  // Verifies that after SIGKILL under a load of new affine clients, every client first served
  // more than one second before the kill is in the database with its node, that the database
  // passes SQLite's integrity check, and that the restarted balancer loads it and sends those
  // clients to the same nodes.
  StateFixture f;
  std::mutex mutex;
  std::vector<std::tuple<std::chrono::steady_clock::time_point, std::string, std::string>> served;
  {
    Balancer balancer({"--config", f.file.string()});
    ChurnOptions options = churn_options(3, in(60s));
    options.source = [](int t, std::uint64_t i) { return client_source(t, i); };
    options.on_served = [&](const std::string& source, const std::string& node) {
      std::lock_guard lock(mutex);
      served.emplace_back(std::chrono::steady_clock::now(), source, node);
    };
    ChurnLoad load(balancer.address("l"), options);
    // Run until over 300 clients were first served more than one second ago.
    const auto old_enough = [&] {
      std::lock_guard lock(mutex);
      const auto cutoff = std::chrono::steady_clock::now() - 1s;
      return std::count_if(served.begin(), served.end(),
                           [&](const auto& entry) { return std::get<0>(entry) < cutoff; }) > 300;
    };
    ASSERT_TRUE(eventually(old_enough, in(30s))) << load.failures();
    const std::uint64_t failed_before_kill = load.failed();
    balancer.process().signal(SIGKILL);
    const auto killed = std::chrono::steady_clock::now();
    ASSERT_TRUE(balancer.process().wait_exit(in(10s)).has_value());
    load.stop();  // its connections fail from the kill on: that is expected
    EXPECT_EQ(failed_before_kill, 0U) << load.failures();
    std::lock_guard lock(mutex);
    std::erase_if(served, [&](const auto& entry) { return std::get<0>(entry) > killed - 1s; });
  }
  ASSERT_GT(served.size(), 100U);
  EXPECT_EQ(integrity(f.state / "protobalance.db"), "ok");
  const auto entries = listed(f.file);
  ASSERT_TRUE(entries);
  std::size_t missing = 0;
  std::size_t moved = 0;
  for (const auto& [when, client, node] : served) {
    const auto it = entries->find(client);
    if (it == entries->end()) {
      ++missing;
    } else if (it->second != node) {
      ++moved;
    }
  }
  std::cout << "[ stats    ] " << served.size() << " clients served over 1 s before the kill, "
            << entries->size() << " entries in the database\n";
  EXPECT_EQ(missing, 0U) << "of " << served.size() << " clients older than 1 s";
  EXPECT_EQ(moved, 0U);

  Balancer again({"--config", f.file.string()});
  ASSERT_TRUE(again.process().wait_for(std::regex("affinity: \\d+ entries loaded"), in(10s)))
      << again.process().output();
  for (std::size_t i = 0; i < served.size(); i += served.size() / 10) {
    const auto& [when, client, node] = served[i];
    Client check(again.address("l"), 5s, client);
    EXPECT_EQ(check.recv_line(in(5s)), node) << client;
  }
}

TEST(Fault, ReadOnlyStateDirectoryForwardsAndPersistsOnceWritable) {
  // Verifies that with the state directory on a read-only file system the balancer forwards
  // every client, counts the failed writes, and persists every waiting entry once the file
  // system is writable again.
  StateFixture f;
  TmpfsMount mount(f.state, "ro,size=8m,mode=0700");
  if (!mount.mounted()) GTEST_SKIP() << mount.why();
  Balancer balancer({"--config", f.file.string()});
  const std::string metrics = balancer.metrics_address(in(10s));
  ASSERT_FALSE(metrics.empty()) << balancer.process().output();
  EXPECT_EQ(serve_clients(balancer.address("l"), 0, 30), 30);
  EXPECT_TRUE(eventually([&] { return scrape_value(metrics, kWriteErrors).value_or(0) > 0; }, in(20s)))
      << "no failed write counted";
  ASSERT_TRUE(mount.remount("rw,size=8m,mode=0700")) << mount.why();
  EXPECT_TRUE(eventually([&] { return all_listed(f.file, 0, 30); }, in(30s)))
      << "entries not persisted after the file system became writable";
  EXPECT_EQ(serve_clients(balancer.address("l"), 1, 10), 10);
  EXPECT_TRUE(eventually([&] { return all_listed(f.file, 1, 10); }, in(20s)));
  EXPECT_EQ(integrity(f.state / "protobalance.db"), "ok");
}

// Fills the file system holding `dir` (a file grown until the write fails); returns its path.
fs::path fill_disk(const fs::path& dir) {
  const fs::path filler = dir / "filler";
  const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const std::string block(64 * 1024, 'z');
  if (fd >= 0) {
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    const std::string byte(1, 'z');
    while (::write(fd, byte.data(), 1) > 0) {
    }
    ::close(fd);
  }
  return filler;
}

TEST(Fault, FullDiskForwardsAndPersistsOnceSpaceReturns) {
  // Verifies that when the disk holding the database fills up, the balancer forwards every
  // client, counts the failed writes, and writes the waiting entries once space is freed.
  StateFixture f;
  TmpfsMount mount(f.state, "size=2m,mode=0700");
  if (!mount.mounted()) GTEST_SKIP() << mount.why();
  Balancer balancer({"--config", f.file.string()});
  const std::string metrics = balancer.metrics_address(in(10s));
  ASSERT_FALSE(metrics.empty()) << balancer.process().output();
  EXPECT_EQ(serve_clients(balancer.address("l"), 0, 10), 10);
  ASSERT_TRUE(eventually([&] { return all_listed(f.file, 0, 10); }, in(20s)));
  const double errors_before = scrape_value(metrics, kWriteErrors).value_or(-1);
  ASSERT_EQ(errors_before, 0);

  const fs::path filler = fill_disk(f.state);
  EXPECT_EQ(serve_clients(balancer.address("l"), 1, 600), 600);
  EXPECT_TRUE(eventually([&] { return scrape_value(metrics, kWriteErrors).value_or(0) > 0; }, in(20s)))
      << "no failed write counted on a full disk";
  fs::remove(filler);
  EXPECT_TRUE(eventually([&] { return all_listed(f.file, 1, 600); }, in(30s)))
      << "entries not persisted after space returned";
  EXPECT_TRUE(all_listed(f.file, 0, 10));
  EXPECT_EQ(integrity(f.state / "protobalance.db"), "ok");
}

TEST(Fault, LockedDatabaseForwardsAndPersistsOnceReleased) {
  // Verifies that while another process holds an exclusive lock on the database, the balancer
  // forwards every client and counts the failed writes, and that the entries are written once
  // the lock is released.
  StateFixture f;
  Balancer balancer({"--config", f.file.string()});
  const std::string metrics = balancer.metrics_address(in(10s));
  ASSERT_FALSE(metrics.empty()) << balancer.process().output();
  EXPECT_EQ(serve_clients(balancer.address("l"), 0, 10), 10);
  ASSERT_TRUE(eventually([&] { return all_listed(f.file, 0, 10); }, in(20s)));

  // The lock is held by this test process: another process than the balancer, as an
  // operator's sqlite3 shell would be.
  sqlite3* locker = nullptr;
  ASSERT_EQ(sqlite3_open((f.state / "protobalance.db").c_str(), &locker), SQLITE_OK);
  const std::unique_ptr<sqlite3, int (*)(sqlite3*)> close_locker(locker, sqlite3_close);
  ASSERT_EQ(sqlite3_exec(locker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK)
      << sqlite3_errmsg(locker);

  EXPECT_EQ(serve_clients(balancer.address("l"), 1, 50), 50);
  EXPECT_TRUE(eventually([&] { return scrape_value(metrics, kWriteErrors).value_or(0) > 0; }, in(30s)))
      << "no failed write counted while the database is locked";
  EXPECT_FALSE(all_listed(f.file, 1, 50)) << "written although locked?";
  ASSERT_EQ(sqlite3_exec(locker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_TRUE(eventually([&] { return all_listed(f.file, 1, 50); }, in(30s)))
      << "entries not persisted after the lock was released";
  EXPECT_EQ(serve_clients(balancer.address("l"), 0, 10), 10);
  EXPECT_EQ(integrity(f.state / "protobalance.db"), "ok");
}

}  // namespace
}  // namespace pb::test::fault
