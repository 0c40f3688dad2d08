#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"

// Load and observation helpers for the fault suite: a churn load generator, /proc figures of a
// process, the admin API over its Unix socket, and a Prometheus scrape.
namespace pb::test {

struct ChurnOptions {
  int threads = 4;
  // The nodes greet ("<name>\n") before echoing: each connection must get a greeting first.
  bool greeting = true;
  // Source address of connection number i of thread t (empty = any); e.g. distinct clients
  // for affinity.
  std::function<std::string(int thread, std::uint64_t i)> source;
  // Called (on the load's thread) for each connection that completed: its source and node.
  std::function<void(const std::string& source, const std::string& node)> on_served;
  std::chrono::milliseconds step_timeout = 5s;  // each connect, read and write
  Deadline until = in(120s);                   // stops by itself at the latest then
};

// Short connections in a loop on several threads, each: connect, read the greeting (which node
// answered), send a line, read its echo, half-close, read the node's FIN. Counts what went
// wrong: `failed` are connections that never reached a node (no connect or no greeting: what a
// client sees as a failed connect); `broken` are connections cut after the node answered,
// counted per node (a node that is killed cuts its own connections).
class ChurnLoad {
 public:
  ChurnLoad(std::string address, ChurnOptions options = {});
  ~ChurnLoad();  // stop()
  ChurnLoad(const ChurnLoad&) = delete;
  ChurnLoad& operator=(const ChurnLoad&) = delete;

  void stop();  // waits for the connections in progress to finish
  std::uint64_t completed() const { return completed_.load(); }
  std::uint64_t failed() const { return failed_.load(); }
  std::uint64_t broken() const;
  std::map<std::string, std::uint64_t> broken_by_node() const;
  std::map<std::string, std::uint64_t> served_by_node() const;
  // The first few failures, for messages.
  std::string failures() const;
  // Waits until at least `n` more connections completed than when called (false at deadline).
  bool wait_completed(std::uint64_t n, Deadline deadline) const;

 private:
  void run(int thread);
  void note_failure(std::string what);

  std::string address_;
  ChurnOptions options_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> completed_{0};
  std::atomic<std::uint64_t> failed_{0};
  mutable std::mutex mutex_;
  std::map<std::string, std::uint64_t> broken_;
  std::map<std::string, std::uint64_t> served_;
  std::vector<std::string> failures_;
  std::vector<std::thread> threads_;
};

// Figures of a running process from /proc.
std::uint64_t rss_kib(pid_t pid);
int open_descriptors(pid_t pid);
double cpu_seconds_of(pid_t pid);

// One HTTP exchange with the admin API on its Unix socket (one request, Connection: close).
struct HttpAnswer {
  int status = 0;  // 0 = no answer (connect failed, closed or deadline)
  std::string body;
};
HttpAnswer admin_request(const std::filesystem::path& socket, const std::string& method,
                         const std::string& target, const std::string& body = "",
                         Deadline deadline = in(5s));
// Sum of "active" over every node in GET /v1/status; nullopt when there is no answer.
std::optional<long> admin_active_sessions(const std::filesystem::path& socket);

// GET http://ADDRESS/PATH over TCP; the body, or nullopt.
std::optional<std::string> http_get_body(const std::string& address, const std::string& path,
                                         Deadline deadline = in(5s));
// The value of one series in a Prometheus text exposition ("name{labels}" or "name" exactly as
// exported), or nullopt when absent.
std::optional<double> metric_value(const std::string& exposition, const std::string& series);

}  // namespace pb::test
