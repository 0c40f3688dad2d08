#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "support/process.hpp"

namespace pb::test {

// A real redis-server for a test: loopback only, no persistence (--save "" --appendonly no), on
// a free port (Redis has no "--port 0": a port is taken from the kernel by binding port 0 and
// closing, and another is tried if redis-server then finds it in use). Killed when destroyed.
class RedisServer {
 public:
  // `password` empty = no AUTH. Fails the test (ADD_FAILURE) if no server is ready in 20 s.
  explicit RedisServer(std::string password = {});
  std::uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  bool ready() const { return process_ != nullptr; }
  // Kills the server (SIGKILL: all data is lost, as in a crash).
  void kill();
  // Starts it again, empty, on the same port; returns false if it is not ready in 20 s.
  bool restart();
  // Freezes (SIGSTOP) and thaws (SIGCONT) the server: connections stay open, nothing answers.
  void pause();
  void resume();

 private:
  bool start(std::uint16_t port);

  std::string password_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace pb::test
