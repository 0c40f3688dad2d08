#include "support/fault_node.hpp"

#include <array>
#include <future>
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

struct FaultNode::Connections {
  std::set<std::shared_ptr<tcp::socket>> open;
};

namespace {

constexpr auto kToken = asio::as_tuple(asio::use_awaitable);

// Runs `work` on the context's thread and waits for it.
template <typename Work>
void run_on(asio::io_context& context, Work work) {
  std::promise<void> done;
  asio::post(context, [&] {
    work();
    done.set_value();
  });
  done.get_future().get();
}

asio::awaitable<void> discard_input(std::shared_ptr<tcp::socket> socket) {
  std::array<char, 16384> buffer{};
  for (;;) {
    auto [ec, n] = co_await socket->async_read_some(asio::buffer(buffer), kToken);
    if (ec) co_return;
  }
}

asio::awaitable<void> serve(std::shared_ptr<tcp::socket> socket, FaultNodeMode mode,
                            std::string greeting, std::atomic<int>& open,
                            std::atomic<std::uint64_t>& sent,
                            std::shared_ptr<void> connections_keepalive,
                            std::set<std::shared_ptr<tcp::socket>>& connections) {
  ++open;
  if (mode == FaultNodeMode::flood) {
    asio::co_spawn(socket->get_executor(), discard_input(socket), asio::detached);
    const std::vector<char> block(64 * 1024, 'f');
    for (;;) {
      auto [ec, n] = co_await asio::async_write(*socket, asio::buffer(block), kToken);
      sent += n;
      if (ec) break;
    }
  } else {
    auto [ec, n] = co_await asio::async_write(*socket, asio::buffer(greeting), kToken);
    std::array<char, 16384> buffer{};
    while (!ec) {
      auto [rec, got] = co_await socket->async_read_some(asio::buffer(buffer), kToken);
      if (rec) {
        boost::system::error_code ignored;
        socket->shutdown(tcp::socket::shutdown_send, ignored);
        break;
      }
      auto [wec, written] = co_await asio::async_write(*socket, asio::buffer(buffer.data(), got), kToken);
      ec = wec;
    }
  }
  connections.erase(socket);
  --open;
  (void)connections_keepalive;
}

}  // namespace

FaultNode::FaultNode(std::string name, FaultNodeMode mode)
    : name_(std::move(name)),
      mode_(mode),
      acceptor_(context_),
      connections_(std::make_shared<Connections>()) {
  listen();
  thread_ = std::thread([this] { context_.run(); });
}

FaultNode::~FaultNode() {
  context_.stop();
  if (thread_.joinable()) thread_.join();
}

std::string FaultNode::address() const { return "127.0.0.1:" + std::to_string(port_); }

void FaultNode::listen() {
  tcp::endpoint endpoint(asio::ip::make_address("127.0.0.1"), port_);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(1024);
  port_ = acceptor_.local_endpoint().port();
  run_accept();
}

void FaultNode::kill() {
  run_on(context_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (const auto& socket : connections_->open) {
      socket->set_option(asio::socket_base::linger(true, 0), ignored);  // close sends a reset
      socket->close(ignored);
    }
  });
}

void FaultNode::revive() {
  std::exception_ptr failure;
  run_on(context_, [this, &failure] {
    try {
      listen();
    } catch (...) {
      failure = std::current_exception();
    }
  });
  if (failure) std::rethrow_exception(failure);
}

void FaultNode::run_accept() {
  asio::co_spawn(
      context_,
      [this, generation = ++generation_]() -> asio::awaitable<void> {
        for (;;) {
          auto [ec, socket] = co_await acceptor_.async_accept(kToken);
          if (generation != generation_) co_return;  // killed meanwhile (maybe revived)
          if (ec) {
            if (!acceptor_.is_open()) co_return;
            continue;
          }
          ++accepted_;
          auto shared = std::make_shared<tcp::socket>(std::move(socket));
          connections_->open.insert(shared);
          asio::co_spawn(context_,
                         serve(shared, mode_, name_ + "\n", open_, sent_, connections_,
                               connections_->open),
                         asio::detached);
        }
      },
      asio::detached);
}

}  // namespace pb::test
