#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "protobalance/net/access_record.hpp"
#include "protobalance/metrics/sources.hpp"

namespace pb::metrics {

// The access log: one line per finished connection, appended to a file by a background thread
// so that a worker never waits for the disk.
//
// submit() only moves the record into a bounded in-memory queue (a few instructions under a
// mutex that is never held during I/O); when the queue is full, because the disk cannot keep
// up, the record is dropped and counted instead of blocking. The writer takes the whole queue
// at once, formats it and writes it with one fwrite and one flush.
//
// Line format (fields in this order, space-separated, time in UTC):
//   2024-06-01T12:00:00.123Z client=192.0.2.7:53422 listener=web cluster=web node=alpha
//   attempts=2 fallovers=1 connect_ms=0.412 to_node=1200 to_client=45000
//   duration_ms=1234.567 end=finished
// (one line in the file; "node=-" when no node served the connection; IPv6 clients as
// [addr]:port).
class AccessLog final : public net::AccessLogSink {
 public:
  static constexpr std::size_t kDefaultCapacity = 16384;

  // Opens `path` for appending (created with mode 0640, parent folders too; "-" = standard
  // output) and starts the writer thread. Throws std::runtime_error("access_log: cannot open
  // PATH: why") when the file cannot be opened.
  explicit AccessLog(std::filesystem::path path, std::size_t capacity = kDefaultCapacity);
  // Writes what is still queued, then stops the writer.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Queues one record; returns false (and counts it as dropped) when the queue is full. Never
  // waits for I/O. Thread-safe.
  bool submit(net::AccessRecord&& record) noexcept override;

  // Makes the writer close and reopen the file before its next write, for log rotation (move
  // the file, then call this; the daemon does on SIGUSR1). Thread-safe.
  void reopen() override;

  // Records written, dropped and failed so far. Thread-safe.
  AccessLogCounts counts() const;

  // The line of one record, without the newline.
  static std::string format(const net::AccessRecord& record);

 private:
  void run();
  void write_batch(std::vector<net::AccessRecord>& batch, std::string& buffer);
  bool open_file();

  std::filesystem::path path_;
  std::size_t capacity_;
  std::FILE* file_ = nullptr;  // only the writer thread uses it after construction
  bool owns_file_ = false;     // false for standard output

  mutable std::mutex mutex_;  // guards queue_ and stop_
  std::condition_variable wake_;
  std::vector<net::AccessRecord> queue_;
  bool stop_ = false;

  std::atomic<bool> reopen_{false};
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::thread writer_;
};

}  // namespace pb::metrics
