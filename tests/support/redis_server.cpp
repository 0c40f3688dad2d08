#include "support/redis_server.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <regex>

namespace pb::test {
namespace {

// A port the kernel considered free a moment ago (0 on failure).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  std::uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

RedisServer::RedisServer(std::string password) : password_(std::move(password)) {
  for (int attempt = 0; attempt < 5; ++attempt) {
    if (start(free_port())) return;
  }
  ADD_FAILURE() << "redis-server did not start (is the redis-server package installed?)";
}

bool RedisServer::start(std::uint16_t port) {
  if (port == 0) return false;
  std::vector<std::string> argv{"/usr/bin/redis-server", "--port", std::to_string(port), "--bind",
                                "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel",
                                "notice"};
  if (!password_.empty()) {
    argv.insert(argv.end(), {"--requirepass", password_});
  }
  auto process = std::make_unique<Process>(argv);
  // Ready, or gone (port in use, missing binary): whichever comes first.
  const std::regex outcome("Ready to accept connections|Address already in use|Could not create");
  const auto found = process->wait_for(outcome, in(std::chrono::seconds(20)));
  if (!found || (*found)[0] != "Ready to accept connections") {
    return false;
  }
  port_ = port;
  process_ = std::move(process);
  return true;
}

void RedisServer::kill() {
  if (process_) {
    process_->signal(SIGKILL);
    process_->wait_exit(in(std::chrono::seconds(10)));
    process_.reset();
  }
}

bool RedisServer::restart() {
  kill();
  // The port was ours a moment ago; a clash is unlikely but is retried for a while.
  const Deadline deadline = in(std::chrono::seconds(20));
  while (std::chrono::steady_clock::now() < deadline) {
    if (start(port_)) return true;
  }
  return false;
}

void RedisServer::pause() {
  if (process_) process_->signal(SIGSTOP);
}

void RedisServer::resume() {
  if (process_) process_->signal(SIGCONT);
}

}  // namespace pb::test
