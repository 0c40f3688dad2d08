#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace pb::test {

using namespace std::chrono_literals;
using Deadline = std::chrono::steady_clock::time_point;
inline Deadline in(std::chrono::milliseconds d) { return std::chrono::steady_clock::now() + d; }

// How a wait for the peer to close ended.
enum class PeerClose { eof, reset, timeout };

// A blocking TCP client for tests in which every operation has a deadline (poll-based).
class Client {
 public:
  Client() = default;
  // Connects to "host:port" or "[v6]:port"; from `source` ("127.0.0.5") when not empty.
  // connected() tells whether it worked; error() says why not.
  explicit Client(const std::string& address, std::chrono::milliseconds timeout = 5s,
                  const std::string& source = "");
  ~Client();
  Client(Client&& other) noexcept;
  Client& operator=(Client&& other) noexcept;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return fd_ >= 0 && error_.empty(); }
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }
  // The port this end of the connection is bound to (0 when not connected): what the server
  // sees as the client's port.
  std::uint16_t local_port() const;

  bool send_all(std::string_view data, Deadline deadline = in(10s));
  // Reads exactly n bytes unless EOF, an error or the deadline comes first.
  std::string recv_exact(std::size_t n, Deadline deadline = in(10s));
  std::string recv_line(Deadline deadline = in(10s));
  // Reads until the peer closes; `closed` (optional) tells how the read ended.
  std::string recv_all(Deadline deadline, PeerClose* closed = nullptr);
  PeerClose wait_closed(Deadline deadline);
  void shutdown_write();
  void close();

 private:
  bool wait(short events, Deadline deadline);
  int fd_ = -1;
  std::string error_;
};

// Random bytes for payload tests.
std::string random_bytes(std::size_t n, unsigned seed);
// Hex SHA-256 of data.
std::string sha256_hex(std::string_view data);

}  // namespace pb::test
