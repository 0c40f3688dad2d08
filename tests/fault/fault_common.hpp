#pragma once

// Helpers shared by the fault suite's files: configuration text, waits on the daemon's admin
// API and metrics, and a tmpfs the test mounts. Everything goes through the daemon's external
// interfaces (sockets, admin API, metrics, pbadmin, the database file).
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/client.hpp"
#include "support/load.hpp"
#include "support/process.hpp"

namespace pb::test::fault {

struct NodeSpec {
  std::string name;
  std::string address;
  int load_factor = 1;
};

// One listener "l" on 127.0.0.1:0 to one cluster "c". `service_extra` is added to [service]
// (which has state_dir = "state"), `cluster_extra` to the cluster table; `tail` at the end.
inline std::string config_text(const std::vector<NodeSpec>& nodes, const std::string& algorithm,
                               const std::string& service_extra = "",
                               const std::string& cluster_extra = "",
                               const std::string& tail = "") {
  std::string text = "[service]\nstate_dir = \"state\"\nshutdown_timeout = \"2s\"\n" + service_extra +
                     "[metrics]\nlisten = \"127.0.0.1:0\"\n"
                     "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\ncluster = \"c\"\n"
                     "[[cluster]]\nname = \"c\"\nalgorithm = \"" + algorithm + "\"\n";
  if (algorithm == "hash") text += "hash_key = \"000102030405060708090a0b0c0d0e0f\"\n";
  text += cluster_extra;
  for (const auto& node : nodes) {
    text += "[[cluster.node]]\nname = \"" + node.name + "\"\naddress = \"" + node.address +
            "\"\nload_factor = " + std::to_string(node.load_factor) + "\n";
  }
  return text + tail;
}

// One series' value from a fresh scrape (nullopt when the scrape or the series is missing).
inline std::optional<double> scrape_value(const std::string& address, const std::string& series) {
  const auto body = http_get_body(address, "/metrics");
  if (!body) return std::nullopt;
  return metric_value(*body, series);
}

// Polls `condition` every 50 ms until it holds or the deadline passes; returns whether it held.
template <typename Condition>
bool eventually(Condition condition, Deadline deadline) {
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);  // polling, bounded by the deadline
  }
}

// Waits until the admin API answers GET /v1/status.
inline bool admin_ready(const std::filesystem::path& socket, Deadline deadline = in(10s)) {
  return eventually([&] { return admin_request(socket, "GET", "/v1/status").status == 200; },
                    deadline);
}

// A tmpfs mounted for the test (the disk-full and read-only faults), unmounted when destroyed.
// mounted() is false, with why() saying so, where the test may not mount (no CAP_SYS_ADMIN).
class TmpfsMount {
 public:
  TmpfsMount(std::filesystem::path at, const std::string& options) : at_(std::move(at)) {
    std::filesystem::create_directories(at_);
    if (::mount("tmpfs", at_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      why_ = "cannot mount a tmpfs at " + at_.string() + ": " + std::strerror(errno);
      return;
    }
    mounted_ = true;
  }
  ~TmpfsMount() {
    if (mounted_) ::umount2(at_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& why() const { return why_; }
  // Remounts with other options (e.g. "rw" after "ro"); false with errno's message in why().
  bool remount(const std::string& options) {
    if (::mount("tmpfs", at_.c_str(), "tmpfs", MS_REMOUNT, options.c_str()) != 0) {
      why_ = std::string("remount failed: ") + std::strerror(errno);
      return false;
    }
    return true;
  }

 private:
  std::filesystem::path at_;
  bool mounted_ = false;
  std::string why_;
};

// Churn load options: `threads` loops until `until` at the latest.
inline ChurnOptions churn_options(int threads, Deadline until) {
  ChurnOptions options;
  options.threads = threads;
  options.until = until;
  return options;
}

// Distinct client source addresses in 127/8 (each a separate affinity client).
inline std::string client_source(int group, std::uint64_t i) {
  return "127." + std::to_string(10 + group) + "." + std::to_string(1 + (i / 250) % 250) + "." +
         std::to_string(1 + i % 250);
}

}  // namespace pb::test::fault
