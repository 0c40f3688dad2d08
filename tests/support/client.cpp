#include "support/client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

namespace pb::test {

namespace {

int remaining_ms(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

bool parse(const std::string& address, sockaddr_storage& out, socklen_t& len) {
  std::string host;
  std::string port;
  if (!address.empty() && address.front() == '[') {
    auto close = address.find(']');
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    auto colon = address.rfind(':');
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
  }
  std::memset(&out, 0, sizeof out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out);
  const auto port_number = static_cast<std::uint16_t>(std::stoi(port.empty() ? "0" : port));
  if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port_number);
    len = sizeof(sockaddr_in);
    return true;
  }
  if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port_number);
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

}  // namespace

Client::Client(const std::string& address, std::chrono::milliseconds timeout,
               const std::string& source) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (!parse(address, addr, len)) {
    error_ = "bad address " + address;
    return;
  }
  fd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = std::strerror(errno);
    return;
  }
  if (!source.empty()) {
    sockaddr_storage src{};
    socklen_t src_len = 0;
    if (!parse(source + ":0", src, src_len) ||
        ::bind(fd_, reinterpret_cast<sockaddr*>(&src), src_len) != 0) {
      error_ = "cannot bind to " + source;
      return;
    }
  }
  const int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 && errno != EINPROGRESS) {
    error_ = std::strerror(errno);
    return;
  }
  if (!wait(POLLOUT, in(timeout))) {
    error_ = "connect timed out";
    return;
  }
  int so_error = 0;
  socklen_t so_len = sizeof so_error;
  ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &so_error, &so_len);
  if (so_error != 0) error_ = std::strerror(so_error);
}

Client::~Client() { close(); }

Client::Client(Client&& other) noexcept : fd_(other.fd_), error_(std::move(other.error_)) {
  other.fd_ = -1;
}

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    error_ = std::move(other.error_);
    other.fd_ = -1;
  }
  return *this;
}

bool Client::wait(short events, Deadline deadline) {
  for (;;) {
    pollfd p{fd_, events, 0};
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return false;
  }
}

bool Client::send_all(std::string_view data, Deadline deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait(POLLOUT, deadline)) return false;
      continue;
    }
    return false;
  }
  return true;
}

std::string Client::recv_exact(std::size_t n, Deadline deadline) {
  std::string out;
  out.reserve(n);
  char buffer[16384];
  while (out.size() < n) {
    ssize_t r = ::recv(fd_, buffer, std::min(sizeof buffer, n - out.size()), 0);
    if (r > 0) {
      out.append(buffer, static_cast<std::size_t>(r));
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait(POLLIN, deadline)) break;
      continue;
    }
    break;  // EOF or error
  }
  return out;
}

std::string Client::recv_line(Deadline deadline) {
  std::string out;
  char c = 0;
  for (;;) {
    ssize_t r = ::recv(fd_, &c, 1, 0);
    if (r == 1) {
      if (c == '\n') return out;
      out.push_back(c);
      continue;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait(POLLIN, deadline)) return out;
      continue;
    }
    return out;
  }
}

std::string Client::recv_all(Deadline deadline, PeerClose* closed) {
  std::string out;
  char buffer[16384];
  for (;;) {
    ssize_t r = ::recv(fd_, buffer, sizeof buffer, 0);
    if (r > 0) {
      out.append(buffer, static_cast<std::size_t>(r));
      continue;
    }
    if (r == 0) {
      if (closed != nullptr) *closed = PeerClose::eof;
      return out;
    }
    if (errno == EAGAIN || errno == EINTR) {
      if (!wait(POLLIN, deadline)) {
        if (closed != nullptr) *closed = PeerClose::timeout;
        return out;
      }
      continue;
    }
    if (closed != nullptr) *closed = PeerClose::reset;
    return out;
  }
}

PeerClose Client::wait_closed(Deadline deadline) {
  PeerClose how = PeerClose::timeout;
  recv_all(deadline, &how);
  return how;
}

std::uint16_t Client::local_port() const {
  sockaddr_storage address{};
  socklen_t length = sizeof address;
  if (fd_ < 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) return 0;
  if (address.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&address)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&address)->sin_port);
}

void Client::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

void Client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string random_bytes(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, n - i));
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(data.data()), data.size());
  char hex[crypto_hash_sha256_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
  return hex;
}

}  // namespace pb::test
