// The access log writer: line format, asynchronous writing, dropping when the disk cannot keep
// up, rotation.
#include "protobalance/metrics/access_log.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::metrics {
namespace {

using namespace std::chrono_literals;
using test::Deadline;
using test::in;
using test::TempDir;

net::AccessRecord sample_record(int n) {
  net::AccessRecord r;
  // 2024-06-01T12:00:00.123Z
  r.end_time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1717243200123));
  r.client_address = boost::asio::ip::make_address("192.0.2.7");
  r.client_port = static_cast<std::uint16_t>(50000 + n);
  r.listener = "web";
  r.cluster = "web-pool";
  r.node = "alpha";
  r.attempts = 2;
  r.fallovers = 1;
  r.connect_time = 412us;
  r.duration = 1234567us;
  r.bytes_to_node = 1200;
  r.bytes_to_client = 45000;
  r.outcome = "finished";
  return r;
}

std::vector<std::string> read_lines(const std::filesystem::path& path) {
  std::ifstream file(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(file, line)) lines.push_back(line);
  return lines;
}

// Polls `condition` until it holds or the deadline passes.
template <typename Condition>
bool eventually(Condition condition, Deadline deadline) {
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

TEST(AccessLogFormat, WritesEveryFieldInOrder) {
  // Verifies the exact line of a record: UTC time with milliseconds, then each field.
  EXPECT_EQ(AccessLog::format(sample_record(0)),
            "2024-06-01T12:00:00.123Z client=192.0.2.7:50000 listener=web cluster=web-pool "
            "node=alpha attempts=2 fallovers=1 connect_ms=0.412 to_node=1200 to_client=45000 "
            "duration_ms=1234.567 end=finished");
}

TEST(AccessLogFormat, BracketsIpv6AndKeepsTheLineOneLine) {
  // Verifies IPv6 clients as [addr]:port, "-" for a missing node, and that spaces or newlines in
  // a text cannot split the line or its fields.
  net::AccessRecord r = sample_record(1);
  r.client_address = boost::asio::ip::make_address("2001:db8::1");
  r.node.clear();
  r.attempts = 3;
  r.fallovers = 3;
  r.connect_time = 0us;
  r.outcome = "node closed\nbefore data";
  EXPECT_EQ(AccessLog::format(r),
            "2024-06-01T12:00:00.123Z client=[2001:db8::1]:50001 listener=web cluster=web-pool "
            "node=- attempts=3 fallovers=3 connect_ms=0.000 to_node=1200 to_client=45000 "
            "duration_ms=1234.567 end=node_closed_before_data");
}

TEST(AccessLogWriter, AppendsOneLinePerRecordInOrder) {
  // Verifies that submitted records reach the file in order, one line each, after what was
  // already there, with mode 0640, and are counted as written.
  TempDir dir;
  const auto path = dir.path() / "logs" / "access.log";
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path) << "earlier line\n";
  {
    AccessLog log(path);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(log.submit(sample_record(i)));
    ASSERT_TRUE(eventually([&] { return log.counts().written == 100; }, in(10s)));
    EXPECT_EQ(log.counts().dropped, 0U);
    EXPECT_EQ(log.counts().failed, 0U);
  }
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 101U);
  EXPECT_EQ(lines[0], "earlier line");
  for (int i = 0; i < 100; ++i) {
    EXPECT_NE(lines[static_cast<std::size_t>(i) + 1].find(
                  " client=192.0.2.7:" + std::to_string(50000 + i) + " "),
              std::string::npos)
        << lines[static_cast<std::size_t>(i) + 1];
  }
}

TEST(AccessLogWriter, CreatesTheFileWithoutWorldAccess) {
  // Verifies that a new log file and its missing folders are created, the file with mode 0640.
  TempDir dir;
  const auto path = dir.path() / "a" / "b" / "access.log";
  { AccessLog log(path); }
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640U);
}

TEST(AccessLogWriter, WritesWhatIsQueuedWhenDestroyed) {
  // Verifies that destroying the log right after submitting still writes every record.
  TempDir dir;
  const auto path = dir.path() / "access.log";
  {
    AccessLog log(path);
    for (int i = 0; i < 500; ++i) ASSERT_TRUE(log.submit(sample_record(i)));
  }
  EXPECT_EQ(read_lines(path).size(), 500U);
}

TEST(AccessLogWriter, DropsAndCountsInsteadOfBlockingWhenTheDiskIsStuck) {
  // Verifies that with the writer stuck in a write that cannot complete (a pipe nobody reads),
  // submit() keeps returning at once, drops what does not fit in the queue and counts it; and
  // that everything accepted is written once the output moves again.
  TempDir dir;
  const auto fifo = dir.path() / "stuck";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const int reader = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);  // lets the writer open it
  ASSERT_GE(reader, 0);

  constexpr std::size_t kCapacity = 8;
  constexpr int kRecords = 200;
  int accepted = 0;
  std::atomic<std::uint64_t> read_bytes{0};
  std::thread drain;
  {
    AccessLog log(fifo, kCapacity);
    net::AccessRecord big = sample_record(0);
    big.outcome = std::string(16 * 1024, 'x');  // 4 lines fill a 64 KiB pipe
    const auto started = std::chrono::steady_clock::now();
    for (int i = 0; i < kRecords; ++i) {
      net::AccessRecord r = big;
      if (log.submit(std::move(r))) ++accepted;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - started, 2s) << "submit() waited";
    const auto counts = log.counts();
    EXPECT_GT(counts.dropped, 0U);
    EXPECT_EQ(counts.dropped + static_cast<std::uint64_t>(accepted), std::uint64_t{kRecords});

    // Unblock the writer: read everything until the log closes its end.
    ::fcntl(reader, F_SETFL, 0);
    drain = std::thread([&] {
      char buffer[65536];
      for (;;) {
        const auto n = ::read(reader, buffer, sizeof(buffer));
        if (n <= 0) return;
        read_bytes += static_cast<std::uint64_t>(n);
      }
    });
    EXPECT_TRUE(eventually(
        [&] { return log.counts().written == static_cast<std::uint64_t>(accepted); }, in(10s)))
        << log.counts().written << " of " << accepted;
  }
  drain.join();
  ::close(reader);
  const std::size_t line_size = AccessLog::format(sample_record(0)).size() - 8 + 16 * 1024 + 1;
  EXPECT_EQ(read_bytes.load(), static_cast<std::uint64_t>(accepted) * line_size);
}

TEST(AccessLogWriter, ReopensTheFileForRotation) {
  // Verifies that after the file is moved away and reopen() is called, new lines go to a new
  // file at the configured path while the moved file keeps the old ones.
  TempDir dir;
  const auto path = dir.path() / "access.log";
  const auto rotated = dir.path() / "access.log.1";
  AccessLog log(path);
  ASSERT_TRUE(log.submit(sample_record(1)));
  ASSERT_TRUE(eventually([&] { return log.counts().written == 1; }, in(10s)));
  std::filesystem::rename(path, rotated);
  log.reopen();
  ASSERT_TRUE(log.submit(sample_record(2)));
  ASSERT_TRUE(eventually([&] { return log.counts().written == 2; }, in(10s)));
  ASSERT_EQ(read_lines(rotated).size(), 1U);
  const auto fresh = read_lines(path);
  ASSERT_EQ(fresh.size(), 1U);
  EXPECT_NE(fresh[0].find("client=192.0.2.7:50002"), std::string::npos);
}

TEST(AccessLogWriter, ReportsAFileThatCannotBeOpened) {
  // Verifies that an unwritable path is a start-up error naming the path.
  TempDir dir;
  const auto blocker = dir.write("file", "x");
  try {
    AccessLog log(blocker / "access.log");  // a folder that is a file
    ADD_FAILURE() << "opened a path under a regular file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(
        std::string(e.what()).find("access_log: cannot open " + (blocker / "access.log").string()),
        std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace pb::metrics
