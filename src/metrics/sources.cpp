#include "protobalance/metrics/sources.hpp"

#include <unistd.h>

#include <exception>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

namespace pb::metrics {

namespace {

// Boot time (seconds since the epoch) from /proc/stat's btime line; 0 when unknown.
long long boot_time_seconds() {
  std::ifstream stat("/proc/stat");
  std::string line;
  while (std::getline(stat, line)) {
    if (line.rfind("btime ", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

// Start time of this process in clock ticks after boot (field 22 of /proc/self/stat); -1 when
// unknown. The command name (field 2) may hold spaces and parentheses, so fields are counted
// from its closing parenthesis.
long long start_ticks_after_boot() {
  std::ifstream stat("/proc/self/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  const auto close = text.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(text.substr(close + 1));
  std::string field;
  for (int index = 3; index <= 22 && fields >> field; ++index) {
    if (index == 22) return std::stoll(field);
  }
  return -1;
}

std::chrono::system_clock::time_point compute_start_time() {
  try {
    const long long boot = boot_time_seconds();
    const long long ticks = start_ticks_after_boot();
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    if (boot > 0 && ticks >= 0 && ticks_per_second > 0) {
      const auto after_boot = std::chrono::milliseconds(ticks * 1000 / ticks_per_second);
      return std::chrono::system_clock::time_point(std::chrono::seconds(boot)) +
             std::chrono::duration_cast<std::chrono::system_clock::duration>(after_boot);
    }
  } catch (const std::exception&) {
    // Unreadable or unexpected /proc: fall back to the first call.
  }
  return std::chrono::system_clock::now();
}

}  // namespace

std::chrono::system_clock::time_point process_start_time() {
  static const std::chrono::system_clock::time_point start = compute_start_time();
  return start;
}

}  // namespace pb::metrics
