#include "support/backend.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace pb::test {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

asio::awaitable<void> serve(tcp::socket socket, BackendMode mode, std::string name,
                            std::atomic<int>& open, std::mutex& mutex, std::string& received) {
  struct OpenCount {
    std::atomic<int>& n;
    explicit OpenCount(std::atomic<int>& c) : n(c) { ++n; }
    ~OpenCount() { --n; }
  } count(open);
  std::array<char, 16384> buffer{};
  const std::string greeting = name + "\n";
  if (mode == BackendMode::close_at_once) co_return;
  if (mode == BackendMode::greet_echo || mode == BackendMode::greet_then_fin) {
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(greeting), kToken);
    if (ec) co_return;
  }
  if (mode == BackendMode::greet_then_fin) {
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_send, ignored);
  }
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buffer), kToken);
    if (ec) break;  // EOF or error
    if (mode == BackendMode::greet_then_fin) {
      std::lock_guard lock(mutex);
      received.append(buffer.data(), n);
      continue;
    }
    if (mode == BackendMode::hold) continue;
    auto [wec, written] = co_await asio::async_write(socket, asio::buffer(buffer.data(), n), kToken);
    if (wec) co_return;
  }
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

Backend::Backend(std::string name, BackendMode mode, const std::string& address)
    : name_(std::move(name)), mode_(mode), acceptor_(context_), host_(address) {
  tcp::endpoint endpoint(asio::ip::make_address(address), 0);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(1024);
  port_ = acceptor_.local_endpoint().port();
  run_accept();
  thread_ = std::thread([this] { context_.run(); });
}

Backend::~Backend() {
  context_.stop();
  if (thread_.joinable()) thread_.join();
}

std::string Backend::address() const {
  if (host_.find(':') != std::string::npos) return "[" + host_ + "]:" + std::to_string(port_);
  return host_ + ":" + std::to_string(port_);
}

std::string Backend::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

void Backend::stop() {
  std::promise<void> done;
  asio::post(context_, [this, &done] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    done.set_value();
  });
  done.get_future().wait();  // when stop() returns, connects are refused
}

void Backend::run_accept() {
  asio::co_spawn(
      context_,
      [this]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await acceptor_.async_accept(kToken);
          if (ec) {
            if (!acceptor_.is_open()) co_return;
            continue;
          }
          ++accepted_;
          asio::co_spawn(context_, serve(std::move(socket), mode_.load(), name_, open_, mutex_, received_),
                         asio::detached);
        }
      },
      asio::detached);
}

BlackHole::BlackHole() {
  listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener_, 0) != 0) {
    throw std::runtime_error("BlackHole: cannot listen");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  // Fill the accept queue (backlog 0 still queues one or two) with non-blocking connects; the
  // kernel then drops further SYNs, so later connects hang until their timeout.
  for (int& fd : fillers_) {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  }
}

BlackHole::~BlackHole() {
  for (int fd : fillers_) {
    if (fd >= 0) ::close(fd);
  }
  if (listener_ >= 0) ::close(listener_);
}

void BlackHole::drain() {
  ::fcntl(listener_, F_SETFL, O_NONBLOCK);  // accept until the queue is empty, never block
  for (int& fd : fillers_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  for (;;) {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK);
    if (fd < 0) break;  // EAGAIN: the queue is empty
    ::close(fd);
  }
}

std::string BlackHole::address() const { return "127.0.0.1:" + std::to_string(port_); }

std::string closed_port_address() {
  // Each port handed out stays bound, never listening, until the test program ends: a connect
  // to it is refused, and no later bind -- a backend this test starts next, another test
  // program's -- can be given the same port (which would make a dead node a live one).
  struct Held {
    std::mutex mutex;
    std::vector<int> fds;
    ~Held() {
      for (const int fd : fds) ::close(fd);
    }
  };
  static Held held;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("closed_port_address: socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("closed_port_address: bind() failed");
  }
  {
    std::lock_guard lock(held.mutex);
    held.fds.push_back(fd);
  }
  return "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

}  // namespace pb::test
