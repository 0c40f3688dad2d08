#include "protobalance/net/listener.hpp"

#include <sys/socket.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <spdlog/spdlog.h>

#include "protobalance/net/connect.hpp"

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// How long an acceptor rests when the process is out of descriptors: long enough not to spin,
// short enough that accepting resumes soon after connections close.
constexpr auto kAcceptPause = std::chrono::milliseconds(100);

// Logs an exception that escaped a session coroutine (a bug, not a network event); the
// process goes on serving everyone else.
void on_session_done(const std::exception_ptr& error) {
  if (!error) return;
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    spdlog::error("session ended by an unexpected error: {}", e.what());
  }
}

}  // namespace

Acceptor open_acceptor(asio::io_context& context, const tcp::endpoint& endpoint) {
  Acceptor acceptor(context);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  int one = 1;
  if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "SO_REUSEPORT");
  }
  if (endpoint.address().is_v6()) acceptor.set_option(asio::ip::v6_only(true));
  acceptor.bind(endpoint);
  acceptor.listen(4096);
  return acceptor;
}

Listener::Listener(Worker& worker, Acceptor acceptor, std::shared_ptr<const Route> route,
                   AcceptStats& stats)
    : worker_(worker),
      acceptor_(std::move(acceptor)),
      pause_timer_(worker.context()),
      route_(std::move(route)),
      stats_(stats) {}

void Listener::start() {
  asio::co_spawn(worker_.context(), [self = shared_from_this()] { return self->accept_loop(); },
                 asio::detached);
}

void Listener::close() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  pause_timer_.cancel();
}

Task<void> Listener::accept_loop() {
  bool warned_descriptors = false;
  while (acceptor_.is_open()) {
    // The peer's address comes from accept() itself: no getpeername() per connection.
    Socket socket(worker_.context());
    tcp::endpoint peer;
    auto [ec] = co_await acceptor_.async_accept(socket, peer, asio::as_tuple(use_task));
    if (!ec) {
      socket.mark_unshared();  // fresh from accept(): no epoll_ctl(DEL) when it closes
      socket.skip_non_blocking_for_waits();  // the relay says MSG_DONTWAIT: no ioctl
      asio::co_spawn(worker_.context(), run_session(worker_, route_, std::move(socket), peer),
                     on_session_done);
      continue;
    }
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
    if (is_local_shortage(ec)) {
      // Out of descriptors: retrying at once would spin on the same error. Existing
      // connections keep flowing; accepting resumes when some close.
      stats_.pauses.fetch_add(1, std::memory_order_relaxed);
      if (!warned_descriptors) {
        spdlog::warn("{}: accept failed ({}); pausing accepts for {} ms at a time",
                     route_->listener, ec.message(), kAcceptPause.count());
        warned_descriptors = true;
      }
      pause_timer_.expires_after(kAcceptPause);
      co_await pause_timer_.async_wait(asio::as_tuple(use_task));
      continue;
    }
    // ECONNABORTED and friends: the client gave up before we accepted; nothing to do.
    spdlog::debug("{}: accept: {}", route_->listener, ec.message());
  }
}

}  // namespace pb::net
