#include "protobalance/metrics/access_log.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <iterator>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace pb::metrics {

namespace {

// Appends `text` as one token of the line: empty becomes "-", and anything that would split the
// line into more fields or lines (spaces, control characters, quotes) becomes '_'.
void append_token(std::string& out, std::string_view text) {
  if (text.empty()) {
    out += '-';
    return;
  }
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    out += (u <= 0x20 || u == 0x7f || c == '"') ? '_' : c;
  }
}

void append_millis(std::string& out, std::chrono::microseconds us) {
  fmt::format_to(std::back_inserter(out), "{}.{:03}", us.count() / 1000, us.count() % 1000);
}

void append_time(std::string& out, std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const std::time_t seconds = static_cast<std::time_t>(ms.count() / 1000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                 utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min,
                 utc.tm_sec, ms.count() % 1000);
}

}  // namespace

std::string AccessLog::format(const net::AccessRecord& r) {
  std::string out;
  out.reserve(256);
  append_time(out, r.end_time);
  out += " client=";
  if (r.client_address.is_v6()) {
    out += '[';
    out += r.client_address.to_string();
    out += ']';
  } else {
    out += r.client_address.to_string();
  }
  fmt::format_to(std::back_inserter(out), ":{}", r.client_port);
  out += " listener=";
  append_token(out, r.listener);
  out += " cluster=";
  append_token(out, r.cluster);
  out += " node=";
  append_token(out, r.node);
  fmt::format_to(std::back_inserter(out), " attempts={} fallovers={} connect_ms=", r.attempts,
                 r.fallovers);
  append_millis(out, r.connect_time);
  fmt::format_to(std::back_inserter(out), " to_node={} to_client={} duration_ms=", r.bytes_to_node,
                 r.bytes_to_client);
  append_millis(out, r.duration);
  out += " end=";
  append_token(out, r.outcome);
  if (!r.server_name.empty()) {  // only with SNI routes: other lines keep their shape
    out += " sni=";
    append_token(out, r.server_name);
  }
  return out;
}

AccessLog::AccessLog(std::filesystem::path path, std::size_t capacity)
    : path_(std::move(path)), capacity_(capacity == 0 ? 1 : capacity) {
  if (!open_file()) {
    throw std::runtime_error(
        fmt::format("access_log: cannot open {}: {}", path_.string(), std::strerror(errno)));
  }
  // Both buffers are sized once, so that submit() never allocates for the queue itself.
  queue_.reserve(capacity_);
  writer_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_one();
  writer_.join();
  if (owns_file_ && file_ != nullptr) std::fclose(file_);
}

bool AccessLog::open_file() {
  if (path_ == "-") {
    file_ = stdout;
    owns_file_ = false;
    return true;
  }
  std::error_code ec;
  if (path_.has_parent_path()) std::filesystem::create_directories(path_.parent_path(), ec);
  // Client addresses are personal data in many places: not world-readable.
  const int fd = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return false;
  std::FILE* file = ::fdopen(fd, "a");
  if (file == nullptr) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return false;
  }
  file_ = file;
  owns_file_ = true;
  return true;
}

bool AccessLog::submit(net::AccessRecord&& record) noexcept {
  bool was_empty = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= capacity_) {
      dropped_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    was_empty = queue_.empty();
    queue_.push_back(std::move(record));  // within the reserved capacity: no allocation
  }
  // The writer sleeps only on an empty queue; while it is busy, records just pile up.
  if (was_empty) wake_.notify_one();
  return true;
}

void AccessLog::reopen() {
  reopen_.store(true, std::memory_order_relaxed);
  wake_.notify_one();
}

AccessLogCounts AccessLog::counts() const {
  return AccessLogCounts{written_.load(std::memory_order_relaxed),
                         dropped_.load(std::memory_order_relaxed),
                         failed_.load(std::memory_order_relaxed)};
}

void AccessLog::run() {
  std::vector<net::AccessRecord> batch;
  batch.reserve(capacity_);
  std::string buffer;
  std::uint64_t dropped_reported = 0;
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] {
        return stop_ || !queue_.empty() || reopen_.load(std::memory_order_relaxed);
      });
      queue_.swap(batch);  // both keep their reserved capacity
      stopping = stop_;
    }
    if (reopen_.exchange(false, std::memory_order_relaxed) && owns_file_) {
      std::fclose(file_);
      file_ = nullptr;
      if (open_file()) {
        // Said after the fact: every record submitted from here on goes to the new file.
        spdlog::info("access_log: reopened {}", path_.string());
      } else {
        spdlog::warn("access_log: cannot reopen {}: {}", path_.string(), std::strerror(errno));
      }
    }
    write_batch(batch, buffer);
    batch.clear();
    if (const std::uint64_t dropped = dropped_.load(std::memory_order_relaxed);
        dropped != dropped_reported) {
      // Warn once when dropping starts; later drops are only counted (and exported).
      if (dropped_reported == 0) {
        spdlog::warn(
            "access_log: the queue of {} records was full; dropping records until {} "
            "catches up (see protobalance_access_log_records_total)",
            capacity_, path_.string());
      }
      dropped_reported = dropped;
    }
    if (stopping) {
      std::lock_guard lock(mutex_);
      if (queue_.empty()) return;  // else write what came in meanwhile, then stop
    }
  }
}

void AccessLog::write_batch(std::vector<net::AccessRecord>& batch, std::string& buffer) {
  if (batch.empty()) return;
  buffer.clear();
  for (const net::AccessRecord& record : batch) {
    buffer += format(record);
    buffer += '\n';
  }
  const bool ok = file_ != nullptr &&
                  std::fwrite(buffer.data(), 1, buffer.size(), file_) == buffer.size() &&
                  std::fflush(file_) == 0;
  if (ok) {
    written_.fetch_add(batch.size(), std::memory_order_relaxed);
    return;
  }
  const int error = errno;
  if (failed_.fetch_add(batch.size(), std::memory_order_relaxed) == 0) {
    spdlog::warn("access_log: cannot write {}: {}; records are counted as failed", path_.string(),
                 std::strerror(error));
  }
  if (file_ != nullptr) std::clearerr(file_);
}

}  // namespace pb::metrics
