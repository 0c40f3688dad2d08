#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace pb::test {

// What a FaultNode does with each connection.
enum class FaultNodeMode {
  greet_echo,  // sends "<name>\n", then echoes every byte (like Backend's greet_echo)
  flood,       // sends without end as fast as the peer takes it, discards what it reads
};

// A test node on 127.0.0.1 that can be killed (its port refuses connects and its open
// connections are reset, as when the process dies) and brought back on the same port, for the
// fault suite. Runs on its own thread with Asio.
class FaultNode {
 public:
  explicit FaultNode(std::string name, FaultNodeMode mode = FaultNodeMode::greet_echo);
  ~FaultNode();
  FaultNode(const FaultNode&) = delete;
  FaultNode& operator=(const FaultNode&) = delete;

  const std::string& name() const { return name_; }
  std::string address() const;  // "127.0.0.1:PORT"
  int accepted() const { return accepted_.load(); }
  int open_connections() const { return open_.load(); }
  // Bytes sent by flood connections so far.
  std::uint64_t bytes_sent() const { return sent_.load(); }

  // Closes the listening socket and resets every open connection. When it returns, connects
  // are refused.
  void kill();
  // Listens again on the same port (kill() first). Throws if the port cannot be bound.
  void revive();

 private:
  struct Connections;
  void listen();
  void run_accept();

  std::string name_;
  FaultNodeMode mode_;
  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      context_.get_executor()};
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  unsigned generation_ = 0;  // of the listening socket: a killed one's accept loop ends
  std::atomic<int> accepted_{0};
  std::atomic<int> open_{0};
  std::atomic<std::uint64_t> sent_{0};
  std::shared_ptr<Connections> connections_;  // touched on the node's thread only
  std::thread thread_;
};

}  // namespace pb::test
