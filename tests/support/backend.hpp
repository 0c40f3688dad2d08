#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace pb::test {

// What a test backend does with each connection.
enum class BackendMode {
  echo,         // sends back every byte; after the client's FIN, sends the rest and closes
  greet_echo,   // sends "<name>\n" first (speaks first), then echoes
  close_at_once,  // closes each connection right after accepting it
  greet_then_fin,  // sends "<name>\n", shuts down its write side, keeps reading until EOF
  hold,         // accepts and reads (discarding) until the client closes
};

// A real TCP server on 127.0.0.1 (or ::1) port 0, run on its own thread with Asio. It records
// how many connections it accepted and, in greet_then_fin mode, what it received.
class Backend {
 public:
  explicit Backend(std::string name, BackendMode mode = BackendMode::echo,
                   const std::string& address = "127.0.0.1");
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& name() const { return name_; }
  std::uint16_t port() const { return port_; }
  std::string address() const;  // "127.0.0.1:PORT" or "[::1]:PORT"
  int accepted() const { return accepted_.load(); }
  int open_connections() const { return open_.load(); }
  std::string received() const;
  // Stops accepting and closes the listening socket (later connects are refused).
  void stop();
  // Changes what the backend does with connections accepted from now on (e.g. close_at_once
  // to make a node fail, then back), without giving up its port.
  void set_mode(BackendMode mode) { mode_.store(mode); }

 private:
  void run_accept();

  std::string name_;
  std::atomic<BackendMode> mode_;
  boost::asio::io_context context_;
  // Keeps the thread running while no socket is open (between stop() and restart()).
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      context_.get_executor()};
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::string host_;
  std::atomic<int> accepted_{0};
  std::atomic<int> open_{0};
  mutable std::mutex mutex_;
  std::string received_;
  std::thread thread_;
};

// A listening socket on 127.0.0.1 whose backlog is full and which never accepts: a connect to
// it hangs (the SYN is dropped), as with an overloaded or black-holed node.
class BlackHole {
 public:
  BlackHole();
  ~BlackHole();
  BlackHole(const BlackHole&) = delete;
  BlackHole& operator=(const BlackHole&) = delete;
  std::string address() const;
  // Makes room in the accept queue (the queued connections are accepted and closed, the
  // fillers closed): a connect still hanging then completes at its next SYN retransmission.
  void drain();

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  int fillers_[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
};

// A port on 127.0.0.1 on which nothing listens (connects are refused), held bound for the rest
// of the test program so that nothing else is given it.
std::string closed_port_address();

}  // namespace pb::test
