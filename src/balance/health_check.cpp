#include "protobalance/balance/health_check.hpp"

#include <array>
#include <memory>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <fmt/format.h>

namespace pb::balance {
namespace {

namespace asio = boost::asio;
using boost::asio::ip::tcp;

constexpr std::size_t kMaxReply = 4096;
constexpr std::size_t kMaxAgentLine = 1024;

// A socket with a deadline for everything done on it: when the timer fires the socket is
// closed, so that the pending operation completes (aborted) and the caller sees `expired`.
// Shared with the timer's handler, which may run after the check has returned.
struct Deadline : std::enable_shared_from_this<Deadline> {
  explicit Deadline(const asio::any_io_executor& executor) : socket(executor), timer(executor) {}

  void start(std::chrono::milliseconds timeout) {
    timer.expires_after(timeout);
    timer.async_wait([self = weak_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto d = self.lock()) {
        d->expired = true;
        boost::system::error_code ignored;
        d->socket.close(ignored);
      }
    });
  }

  static std::shared_ptr<Deadline> make(const asio::any_io_executor& executor) {
    return std::make_shared<Deadline>(executor);
  }

  tcp::socket socket;
  asio::steady_timer timer;
  bool expired = false;
};

CheckResult classify(const boost::system::error_code& ec, bool expired) {
  if (expired) return CheckResult::timeout;
  if (ec == asio::error::connection_refused) return CheckResult::refused;
  if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) {
    return CheckResult::reset;
  }
  if (ec == asio::error::eof) return CheckResult::closed;
  if (ec == asio::error::timed_out) return CheckResult::timeout;
  // Unreachable and the like: the node cannot be reached, which the operator reads as refused
  // (the log line carries the error itself).
  return CheckResult::refused;
}

CheckOutcome failed(const boost::system::error_code& ec, bool expired, std::string what) {
  const CheckResult result = classify(ec, expired);
  if (result == CheckResult::refused && ec != asio::error::connection_refused) {
    what += (what.empty() ? "" : ": ") + ec.message();
  }
  return CheckOutcome{result, std::move(what)};
}

}  // namespace

std::string printable(std::string_view text, std::size_t limit) {
  std::string out;
  for (const char c : text.substr(0, limit)) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte >= 0x20 && byte < 0x7f && c != '\\') {
      out += c;
    } else {
      out += fmt::format("\\x{:02x}", byte);
    }
  }
  if (text.size() > limit) out += "...";
  return out;
}

std::chrono::milliseconds check_offset(std::size_t index, std::size_t count,
                                       std::chrono::milliseconds interval) {
  if (count == 0) return std::chrono::milliseconds(0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(
      static_cast<double>(interval.count()) * static_cast<double>(index % count) /
      static_cast<double>(count)));
}

asio::awaitable<CheckOutcome> run_check(CheckTarget target) {
  auto deadline = Deadline::make(co_await asio::this_coro::executor);
  deadline->start(target.timeout);
  tcp::socket& socket = deadline->socket;

  auto [connect_ec] = co_await socket.async_connect(target.endpoint, asio::as_tuple(asio::use_awaitable));
  if (connect_ec) co_return failed(connect_ec, deadline->expired, "");

  const std::string out = target.preamble + target.send;
  if (!out.empty()) {
    auto [write_ec, written] =
        co_await asio::async_write(socket, asio::buffer(out), asio::as_tuple(asio::use_awaitable));
    (void)written;
    if (write_ec) co_return failed(write_ec, deadline->expired, "");
  }
  if (target.expect.empty()) {
    deadline->timer.cancel();
    co_return CheckOutcome{};
  }

  std::string reply;
  std::array<char, 1024> buffer{};
  for (;;) {
    auto [read_ec, n] =
        co_await socket.async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
    reply.append(buffer.data(), n);
    if (reply.find(target.expect) != std::string::npos) {
      deadline->timer.cancel();
      co_return CheckOutcome{};
    }
    if (reply.size() >= kMaxReply) {
      deadline->timer.cancel();
      co_return CheckOutcome{CheckResult::mismatch, "got \"" + printable(reply) + "\""};
    }
    if (read_ec) {
      // Something came back, but not the expected text: that, not the way it ended, is the news.
      if (!reply.empty() && read_ec != asio::error::connection_reset) {
        co_return CheckOutcome{CheckResult::mismatch, "got \"" + printable(reply) + "\""};
      }
      co_return failed(read_ec, deadline->expired, "");
    }
  }
}

asio::awaitable<AgentLine> read_agent_line(tcp::endpoint endpoint,
                                           std::chrono::milliseconds timeout) {
  auto deadline = Deadline::make(co_await asio::this_coro::executor);
  deadline->start(timeout);
  tcp::socket& socket = deadline->socket;
  auto [connect_ec] = co_await socket.async_connect(endpoint, asio::as_tuple(asio::use_awaitable));
  if (connect_ec) {
    auto outcome = failed(connect_ec, deadline->expired, "");
    co_return AgentLine{outcome.result, {}, std::move(outcome.detail)};
  }
  std::string line;
  std::array<char, 256> buffer{};
  for (;;) {
    auto [read_ec, n] =
        co_await socket.async_read_some(asio::buffer(buffer), asio::as_tuple(asio::use_awaitable));
    line.append(buffer.data(), n);
    if (const auto newline = line.find('\n'); newline != std::string::npos) {
      line.resize(newline);
      break;
    }
    if (line.size() >= kMaxAgentLine) break;
    if (read_ec == asio::error::eof && !line.empty()) break;  // a last line without '\n'
    if (read_ec) {
      auto outcome = failed(read_ec, deadline->expired, "");
      co_return AgentLine{outcome.result, std::move(line), std::move(outcome.detail)};
    }
  }
  deadline->timer.cancel();
  co_return AgentLine{CheckResult::ok, std::move(line), {}};
}

}  // namespace pb::balance
