#include "support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include <gtest/gtest.h>

namespace pb::test {

Process::Process(std::vector<std::string> argv, ProcessOptions options) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // If the test binary itself is killed, its daemons must not live on holding ports. (The
    // signal follows the forking thread; every Process is created and waited for on one.)
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(pipe_fds[1], STDOUT_FILENO);
    ::dup2(pipe_fds[1], STDERR_FILENO);
    int devnull = ::open("/dev/null", O_RDONLY);
    ::dup2(devnull, STDIN_FILENO);
    if (options.max_open_files > 0) {
      rlimit limit{static_cast<rlim_t>(options.max_open_files),
                   static_cast<rlim_t>(options.max_open_files)};
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (!options.working_dir.empty() && ::chdir(options.working_dir.c_str()) != 0) ::_exit(126);
    // The test's own sockets (backends' listeners: Asio does not open them close-on-exec) must
    // not live on in the child, or closing one in the test would not stop it listening.
    ::close_range(3, ~0U, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  reader_ = std::thread([this, fd = pipe_fds[0]] { read_output(fd); });
}

Process::~Process() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    wait_exit(in(10s));
  }
  if (reader_.joinable()) reader_.join();
}

void Process::read_output(int fd) {
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      break;
    }
    std::lock_guard lock(mutex_);
    output_.append(buffer, static_cast<std::size_t>(n));
    changed_.notify_all();
  }
  ::close(fd);
}

std::optional<std::vector<std::string>> Process::wait_for(const std::regex& pattern,
                                                         Deadline deadline) {
  std::unique_lock lock(mutex_);
  for (;;) {
    std::smatch match;
    if (std::regex_search(output_, match, pattern)) {
      std::vector<std::string> groups;
      for (const auto& m : match) groups.push_back(m.str());
      return groups;
    }
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      if (std::regex_search(output_, match, pattern)) continue;
      return std::nullopt;
    }
  }
}

void Process::drain_output() {
  if (reader_.joinable()) reader_.join();
}

std::string Process::output() const {
  std::lock_guard lock(mutex_);
  return output_;
}

void Process::signal(int signo) {
  if (running()) ::kill(pid_, signo);
}

std::optional<int> Process::wait_exit(Deadline deadline) {
  while (!exit_code_) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);  // polling a child's exit; bounded by the deadline
  }
  return exit_code_;
}

bool Process::running() {
  if (exit_code_) return false;
  return !wait_exit(std::chrono::steady_clock::now()).has_value();
}

RunResult run(std::vector<std::string> argv, Deadline deadline) {
  Process process(std::move(argv));
  RunResult result;
  auto code = process.wait_exit(deadline);
  if (!code) {
    process.signal(SIGKILL);
    code = process.wait_exit(in(5s));
    ADD_FAILURE() << "command did not finish before its deadline";
  }
  result.exit_code = code.value_or(-1);
  process.drain_output();
  result.output = process.output();
  return result;
}

std::string binary(const std::string& name) { return std::string(PB_BIN_DIR) + "/" + name; }

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "pbtest-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all,
                               std::filesystem::perm_options::add, ignored);
  std::filesystem::remove_all(path_, ignored);
}

std::filesystem::path TempDir::write(const std::string& name, const std::string& content) const {
  auto file = path_ / name;
  std::filesystem::create_directories(file.parent_path());
  FILE* f = std::fopen(file.c_str(), "w");
  if (f == nullptr) throw std::runtime_error("cannot write " + file.string());
  std::fwrite(content.data(), 1, content.size(), f);
  std::fclose(f);
  return file;
}

Balancer::Balancer(std::vector<std::string> args, ProcessOptions options) {
  args.insert(args.begin(), binary("protobalance"));
  process_ = std::make_unique<Process>(std::move(args), std::move(options));
  if (!process_->wait_for(std::regex("serving with \\d+ worker"), in(15s))) {
    ADD_FAILURE() << "protobalance did not start; output:\n" << process_->output();
    return;
  }
  const std::string out = process_->output();
  const std::regex line("listener (\\S+) on (\\S+) ->");
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
    listeners_.emplace_back((*it)[1].str(), (*it)[2].str());
  }
}

std::string Balancer::address(const std::string& listener) const {
  for (const auto& [name, address] : listeners_) {
    if (name == listener) return address;
  }
  ADD_FAILURE() << "no listener " << listener;
  return "127.0.0.1:1";
}

std::string Balancer::metrics_address(Deadline deadline) {
  const auto match =
      process_->wait_for(std::regex(R"(metrics: serving http://(\S+)/metrics)"), deadline);
  return match ? (*match)[1] : "";
}

std::unique_ptr<Balancer> start_daemon(const TempDir& dir, const std::string& toml) {
  const auto file = dir.write("pb.toml", toml);
  return std::make_unique<Balancer>(std::vector<std::string>{"--config", file.string()});
}

}  // namespace pb::test
