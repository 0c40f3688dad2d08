#include "support/load.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

namespace pb::test {

ChurnLoad::ChurnLoad(std::string address, ChurnOptions options)
    : address_(std::move(address)), options_(std::move(options)) {
  for (int t = 0; t < options_.threads; ++t) threads_.emplace_back([this, t] { run(t); });
}

ChurnLoad::~ChurnLoad() { stop(); }

void ChurnLoad::stop() {
  stop_ = true;
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
}

void ChurnLoad::note_failure(std::string what) {
  std::lock_guard lock(mutex_);
  if (failures_.size() < 10) failures_.push_back(std::move(what));
}

void ChurnLoad::run(int thread) {
  const auto step = options_.step_timeout;
  for (std::uint64_t i = 0; !stop_ && std::chrono::steady_clock::now() < options_.until; ++i) {
    const std::string source = options_.source ? options_.source(thread, i) : std::string();
    Client client(address_, step, source);
    if (!client.connected()) {
      ++failed_;
      note_failure("connect: " + client.error());
      continue;
    }
    std::string node = "?";
    if (options_.greeting) {
      node = client.recv_line(in(step));
      if (node.empty()) {
        ++failed_;
        note_failure("closed before any node answered");
        continue;
      }
    }
    const std::string line = "ping " + std::to_string(thread) + "/" + std::to_string(i) + "\n";
    bool ok = client.send_all(line, in(step)) && client.recv_exact(line.size(), in(step)) == line;
    if (ok) {
      client.shutdown_write();
      PeerClose how = PeerClose::timeout;
      client.recv_all(in(step), &how);
      ok = how == PeerClose::eof;
    }
    if (ok && options_.on_served) options_.on_served(source, node);
    std::lock_guard lock(mutex_);
    if (ok) {
      ++served_[node];
      ++completed_;
    } else {
      ++broken_[node];
      if (failures_.size() < 10) failures_.push_back("cut after node " + node + " answered");
    }
  }
}

std::uint64_t ChurnLoad::broken() const {
  std::lock_guard lock(mutex_);
  std::uint64_t total = 0;
  for (const auto& [node, n] : broken_) total += n;
  return total;
}

std::map<std::string, std::uint64_t> ChurnLoad::broken_by_node() const {
  std::lock_guard lock(mutex_);
  return broken_;
}

std::map<std::string, std::uint64_t> ChurnLoad::served_by_node() const {
  std::lock_guard lock(mutex_);
  return served_;
}

std::string ChurnLoad::failures() const {
  std::lock_guard lock(mutex_);
  std::string out;
  for (const auto& f : failures_) out += f + "; ";
  return out;
}

bool ChurnLoad::wait_completed(std::uint64_t n, Deadline deadline) const {
  const std::uint64_t target = completed_.load() + n;
  while (completed_.load() < target) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);  // polling a counter, bounded by the deadline
  }
  return true;
}

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::uint64_t rss_kib(pid_t pid) {
  const std::string status = read_file("/proc/" + std::to_string(pid) + "/status");
  std::smatch match;
  if (!std::regex_search(status, match, std::regex(R"(VmRSS:\s+(\d+) kB)"))) return 0;
  return std::stoull(match[1].str());
}

int open_descriptors(pid_t pid) {
  int n = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return n;
}

double cpu_seconds_of(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    if (i == 15) break;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

namespace {

// Waits for `events` on fd until the deadline.
bool wait_fd(int fd, short events, Deadline deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// Sends a whole request and reads until the peer closes; returns what was read.
std::optional<std::string> exchange(int fd, const std::string& request, Deadline deadline) {
  for (std::size_t sent = 0; sent < request.size();) {
    if (!wait_fd(fd, POLLOUT, deadline)) return std::nullopt;
    const ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return std::nullopt;
    sent += static_cast<std::size_t>(n);
  }
  std::string answer;
  char buffer[16384];
  for (;;) {
    if (!wait_fd(fd, POLLIN, deadline)) return std::nullopt;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    answer.append(buffer, static_cast<std::size_t>(n));
  }
  return answer;
}

HttpAnswer parse_answer(const std::optional<std::string>& raw) {
  HttpAnswer answer;
  if (!raw) return answer;
  std::smatch match;
  if (!std::regex_search(*raw, match, std::regex(R"(^HTTP/1\.[01] (\d{3}))"))) return answer;
  answer.status = std::stoi(match[1].str());
  const auto end = raw->find("\r\n\r\n");
  if (end != std::string::npos) answer.body = raw->substr(end + 4);
  return answer;
}

}  // namespace

HttpAnswer admin_request(const std::filesystem::path& socket, const std::string& method,
                         const std::string& target, const std::string& body, Deadline deadline) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return {};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.size() >= sizeof addr.sun_path) {
    ::close(fd);
    return {};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  std::optional<std::string> raw;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 || errno == EAGAIN) {
    raw = exchange(fd,
                   method + " " + target + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" +
                       "Content-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body,
                   deadline);
  }
  ::close(fd);
  return parse_answer(raw);
}

std::optional<long> admin_active_sessions(const std::filesystem::path& socket) {
  const HttpAnswer answer = admin_request(socket, "GET", "/v1/status");
  if (answer.status != 200) return std::nullopt;
  long total = 0;
  const std::regex active(R"("active":(\d+))");
  for (std::sregex_iterator it(answer.body.begin(), answer.body.end(), active), end; it != end; ++it) {
    total += std::stol((*it)[1].str());
  }
  return total;
}

std::optional<std::string> http_get_body(const std::string& address, const std::string& path,
                                         Deadline deadline) {
  Client client(address, 5s);
  if (!client.connected()) return std::nullopt;
  const std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + address +
                              "\r\nConnection: close\r\n\r\n";
  if (!client.send_all(request, deadline)) return std::nullopt;
  const HttpAnswer answer = parse_answer(client.recv_all(deadline));
  if (answer.status != 200) return std::nullopt;
  return answer.body;
}

std::optional<double> metric_value(const std::string& exposition, const std::string& series) {
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::stod(line.substr(series.size() + 1));
    }
  }
  return std::nullopt;
}

}  // namespace pb::test
