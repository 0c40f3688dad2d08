#pragma once

// The I/O types of the data path. Relayed sockets are plain descriptors (Fd) in the worker's own
// edge-triggered epoll set (poller.hpp), not Asio sockets; the worker runs its own event loop
// (worker.cpp), with no Asio object on its thread. Asio opens and binds listening sockets
// (Acceptor, on the control thread's io_context), which the worker's Listener then takes over.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace pb::net {

using Executor = boost::asio::io_context::executor_type;

using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;

// A relayed TCP socket: a non-blocking descriptor this program owns, in no reactor but its
// worker's Poller (see poller.hpp). Closing it leaves the poller's set by itself.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      close();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { close(); }

  int native_handle() const { return fd_; }
  bool is_open() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }
  // Passes an end of stream on (FIN); errors mean the peer is gone, which reads will say.
  void shutdown_send() const { ::shutdown(fd_, SHUT_WR); }
  // TCP_NODELAY: low latency for interactive protocols. A failure means the peer is gone.
  void set_no_delay() const {
    const int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }

 private:
  int fd_ = -1;
};

}  // namespace pb::net
