#pragma once

// Header-only on purpose: it uses the PROXY codec of the net area, which pb_test_support (linked
// into every test executable) must not depend on. Include it only from tests that link pb_net.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include "protobalance/net/proxy_protocol.hpp"

namespace pb::test {

// A node that expects a PROXY header (v1 or v2) at the start of each connection, as a server
// behind HAProxy with `accept-proxy` would: it parses the header, records what it said, then
// echoes the rest. A connection whose first bytes are not a valid header is recorded as such
// and closed. Runs on its own thread; 127.0.0.1 or ::1, port 0. close_next(n) makes it close
// the next n connections at once, unread and unrecorded (a node failing before any data).
class ProxyBackend {
 public:
  struct Seen {
    bool valid = false;
    bool local = false;  // v2 LOCAL or v1 UNKNOWN
    boost::asio::ip::tcp::endpoint source;
    boost::asio::ip::tcp::endpoint destination;
    std::size_t header_size = 0;
    std::string header;  // the raw header bytes
    std::string authority;  // v2 AUTHORITY TLV (the TLS server name), if any
  };

  explicit ProxyBackend(const std::string& address = "127.0.0.1")
      : acceptor_(context_, {boost::asio::ip::make_address(address), 0}) {
    port_ = acceptor_.local_endpoint().port();
    host_ = address;
    accept();
    thread_ = std::thread([this] { context_.run(); });
  }
  ~ProxyBackend() {
    guard_.reset();
    context_.stop();
    thread_.join();
  }
  ProxyBackend(const ProxyBackend&) = delete;
  ProxyBackend& operator=(const ProxyBackend&) = delete;

  std::string address() const {
    return (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" +
           std::to_string(port_);
  }
  int accepted() const { return accepted_.load(); }
  void close_next(int n) { close_next_.store(n); }
  std::vector<Seen> seen() const {
    std::lock_guard lock(mutex_);
    return seen_;
  }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    explicit Session(boost::asio::ip::tcp::socket s, ProxyBackend& b) : socket(std::move(s)), backend(b) {}
    void read_header() {
      socket.async_read_some(boost::asio::buffer(chunk), [self = shared_from_this()](auto ec, std::size_t n) {
        if (ec) return;
        self->data.append(self->chunk.data(), n);
        net::proxy::Header header;
        const auto parsed = net::proxy::parse(
            {reinterpret_cast<const std::uint8_t*>(self->data.data()), self->data.size()}, header);
        if (parsed.status == net::proxy::Status::incomplete) {
          self->read_header();
          return;
        }
        Seen seen;
        seen.valid = parsed.status == net::proxy::Status::complete;
        if (seen.valid) {
          seen.local = header.local;
          seen.source = header.source;
          seen.destination = header.destination;
          seen.header_size = parsed.size;
          seen.header = self->data.substr(0, parsed.size);
          seen.authority = header.authority;
        }
        {
          std::lock_guard lock(self->backend.mutex_);
          self->backend.seen_.push_back(seen);
        }
        if (!seen.valid) return;  // closes
        self->data.erase(0, parsed.size);
        self->echo_pending();
      });
    }
    void echo_pending() {
      if (data.empty()) {
        echo();
        return;
      }
      auto out = std::make_shared<std::string>(std::move(data));
      data.clear();
      boost::asio::async_write(socket, boost::asio::buffer(*out),
                               [self = shared_from_this(), out](auto ec, std::size_t) {
                                 if (!ec) self->echo();
                               });
    }
    void echo() {
      socket.async_read_some(boost::asio::buffer(chunk), [self = shared_from_this()](auto ec, std::size_t n) {
        if (ec) {
          boost::system::error_code ignored;
          self->socket.shutdown(boost::asio::socket_base::shutdown_send, ignored);
          return;
        }
        self->data.assign(self->chunk.data(), n);
        self->echo_pending();
      });
    }
    boost::asio::ip::tcp::socket socket;
    ProxyBackend& backend;
    std::array<char, 4096> chunk{};
    std::string data;
  };

  void accept() {
    acceptor_.async_accept([this](auto ec, boost::asio::ip::tcp::socket socket) {
      if (ec) return;
      ++accepted_;
      if (close_next_.load() > 0) {
        --close_next_;
        socket.close();
      } else {
        std::make_shared<Session>(std::move(socket), *this)->read_header();
      }
      accept();
    });
  }

  boost::asio::io_context context_;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_{
      context_.get_executor()};
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::string host_;
  std::atomic<int> accepted_{0};
  std::atomic<int> close_next_{0};
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
  std::thread thread_;
};

}  // namespace pb::test
