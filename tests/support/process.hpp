#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "support/client.hpp"

namespace pb::test {

struct ProcessOptions {
  long max_open_files = 0;  // when not 0: RLIMIT_NOFILE (soft and hard) of the child
  std::filesystem::path working_dir;
};

// A child process (the real protobalance or pbadmin binary) whose stderr and stdout are
// collected. Killed with SIGKILL if still running when destroyed.
class Process {
 public:
  explicit Process(std::vector<std::string> argv, ProcessOptions options = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Waits until the output has a line matching `pattern`; returns its submatches (0 = whole).
  std::optional<std::vector<std::string>> wait_for(const std::regex& pattern, Deadline deadline);
  std::string output() const;
  // After exit: waits until all the output has been read (the pipe reached EOF).
  void drain_output();
  void signal(int signo);
  // The exit code once the process has exited (128 + N when killed by signal N), or nullopt if
  // it is still running at the deadline.
  std::optional<int> wait_exit(Deadline deadline);
  bool running();

 private:
  void read_output(int fd);

  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  std::thread reader_;
};

// Runs a command to completion (deadline-bound); returns exit code and combined output.
struct RunResult {
  int exit_code = -1;
  std::string output;
};
RunResult run(std::vector<std::string> argv, Deadline deadline = in(30s));

// Path of a built binary (build/bin/NAME).
std::string binary(const std::string& name);

// A fresh temporary directory, removed with everything in it when destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  // Writes a file under the directory and returns its path.
  std::filesystem::path write(const std::string& name, const std::string& content) const;

 private:
  std::filesystem::path path_;
};

// A protobalance daemon started for a test; waits until its listeners are bound.
class Balancer {
 public:
  // `args` are the arguments after the binary name. Fails the test if the daemon does not
  // report its listeners within the deadline.
  explicit Balancer(std::vector<std::string> args, ProcessOptions options = {});
  Process& process() { return *process_; }
  // Bound address of a listener ("127.0.0.1:PORT"); quick mode's listener is "default".
  std::string address(const std::string& listener = "default") const;
  // Address of the Prometheus exporter ("127.0.0.1:PORT", from the "metrics: serving" line),
  // for a config with [metrics] listen; "" if the daemon does not report one by the deadline.
  std::string metrics_address(Deadline deadline = in(5s));

 private:
  std::unique_ptr<Process> process_;
  std::vector<std::pair<std::string, std::string>> listeners_;
};

// Writes `toml` as DIR/pb.toml and starts a daemon with it (--config).
std::unique_ptr<Balancer> start_daemon(const TempDir& dir, const std::string& toml);

}  // namespace pb::test
