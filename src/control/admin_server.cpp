#include "protobalance/control/admin_server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <array>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <tuple>
#include <unordered_set>
#include <utility>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/control/admin_api.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/version.hpp"

namespace pb::control {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using local = asio::local::stream_protocol;
using Stream = beast::basic_stream<local, asio::any_io_executor, beast::unlimited_rate_policy>;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// A request must arrive whole within this (also the idle time allowed between keep-alive
// requests): pbadmin sends at once, and a stuck client must not hold a connection for ever.
constexpr std::chrono::seconds kReadTimeout{10};
constexpr std::chrono::seconds kWriteTimeout{10};
// After an error that ends the connection, unread input is drained this long (at most
// kLingerBytes) so that closing does not reset the connection before the client read the answer.
constexpr std::chrono::seconds kLingerTime{1};
constexpr std::size_t kLingerBytes = 1024 * 1024;

}  // namespace

struct AdminServer::State {
  explicit State(asio::io_context& context) : acceptor(context) {}
  local::acceptor acceptor;
  // Open connections, to close them at stop(). Touched on the control thread only.
  std::unordered_set<Stream*> connections;
  bool stopped = false;
};

namespace {

http::response<http::string_body> make_response(const AdminResponse& answer, unsigned version,
                                                bool keep_alive) {
  http::response<http::string_body> response{static_cast<http::status>(answer.status), version};
  response.set(http::field::server, std::string("protobalance/") + pb::kVersion);
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  if (!answer.allow.empty()) response.set(http::field::allow, answer.allow);
  response.keep_alive(keep_alive);
  response.body() = json::serialize(answer.body) + "\n";
  response.prepare_payload();
  return response;
}

// Ends a connection after an answer that the client may not have finished sending for: stop
// writing, then read and discard what is still coming for a moment, so that the kernel does not
// reset the connection (and drop our answer) on close.
asio::awaitable<void> linger_close(Stream& stream) {
  boost::system::error_code ignored;
  stream.socket().shutdown(local::socket::shutdown_send, ignored);
  stream.expires_after(kLingerTime);
  std::array<char, 4096> sink{};
  std::size_t drained = 0;
  while (drained < kLingerBytes) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kUseTuple);
    if (ec) break;
    drained += n;
  }
  stream.close();
}

// Completes, on the calling coroutine's executor (the control thread), once the store has
// committed what was queued before the call, or failed to; the control thread serves other
// requests, metrics and timers meanwhile.
asio::awaitable<void> store_written(state::Store& store) {
  auto executor = co_await asio::this_coro::executor;
  co_await asio::async_initiate<decltype(asio::use_awaitable), void()>(
      [&store, executor](auto handler) {
        // std::function wants a copyable callable; the coroutine's handler is move-only.
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        store.when_written([executor, shared]() mutable {
          asio::post(executor, [shared = std::move(shared)] { std::move(*shared)(); });
        });
      },
      asio::use_awaitable);
}

// Serves one connection: requests in order (keep-alive), until the client closes, a timeout,
// an error that leaves the stream unusable, or stop().
asio::awaitable<void> serve(std::shared_ptr<AdminServer::State> state, Runtime& runtime,
                            local::socket socket) {
  Stream stream(std::move(socket));
  state->connections.insert(&stream);
  struct Forget {
    AdminServer::State& state;
    Stream* stream;
    ~Forget() { state.connections.erase(stream); }
  } forget{*state, &stream};

  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(kAdminHeaderLimit));
    parser.body_limit(kAdminBodyLimit);
    stream.expires_after(kReadTimeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kUseTuple);
    if (!ec && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      // curl and others wait for this before sending a body of more than 1 KiB.
      http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
      auto [write_ec, written] = co_await http::async_write(stream, go_on, kUseTuple);
      ec = write_ec;
    }
    if (!ec && !parser.is_done()) {
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, kUseTuple);
    }
    if (ec) {
      if (state->stopped || ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
          ec == asio::error::eof || ec == http::error::partial_message) {
        co_return;  // the client went away or stayed silent: nothing to answer
      }
      AdminResponse answer;
      if (ec == http::error::body_limit) {
        answer = error_response(413, fmt::format("request body too large; the limit is {} bytes",
                                                 kAdminBodyLimit));
      } else if (ec == http::error::header_limit) {
        answer = error_response(431, fmt::format("request header too large; the limit is {} bytes",
                                                 kAdminHeaderLimit));
      } else {
        answer = error_response(400, fmt::format("malformed HTTP request: {}", ec.message()));
      }
      spdlog::debug("admin: refused a request: {}", ec.message());
      auto response = make_response(answer, 11, false);
      stream.expires_after(kWriteTimeout);
      auto [write_ec, written] = co_await http::async_write(stream, response, kUseTuple);
      if (!write_ec) co_await linger_close(stream);
      co_return;
    }

    const auto& request = parser.get();
    const std::string method(request.method_string());
    const std::string target(request.target());
    const AdminResponse answer = handle_admin_request(runtime, method, target, request.body());
    if (answer.after_store && runtime.store() != nullptr) co_await store_written(*runtime.store());
    spdlog::debug("admin: {} {} -> {}", method, target, answer.status);
    if (state->stopped) co_return;  // the request stopped the server (cannot happen today)
    const bool keep_alive = request.keep_alive();
    auto response = make_response(answer, request.version(), keep_alive);
    stream.expires_after(kWriteTimeout);
    auto [write_ec, written] = co_await http::async_write(stream, response, kUseTuple);
    if (write_ec) co_return;
    if (!keep_alive) {
      boost::system::error_code ignored;
      stream.socket().shutdown(local::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<AdminServer::State> state, Runtime& runtime) {
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, socket] = co_await state->acceptor.async_accept(kUseTuple);
    if (state->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors, most likely: wait rather than spin; the next accept may work.
      spdlog::warn("admin: accept failed: {}", ec.message());
      asio::steady_timer pause(executor, std::chrono::milliseconds(100));
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    asio::co_spawn(executor, serve(state, runtime, std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::warn("admin: connection ended by an error: {}", x.what());
      }
    });
  }
}

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw std::runtime_error(fmt::format("admin socket {}: {}", path.string(), what));
}

// A socket file found at start: refuses when it is not a socket or someone answers on it (a
// daemon already running with this state_dir), removes it when it is a leftover.
void clear_stale_socket(asio::io_context& context, const fs::path& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    fail(path, fmt::format("cannot inspect it: {}", std::strerror(errno)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    fail(path, "exists and is not a socket; remove it or set another [admin] socket");
  }
  local::socket probe(context);
  boost::system::error_code ec;
  probe.open(local(), ec);
  if (!ec) probe.non_blocking(true, ec);
  if (!ec) probe.connect(local::endpoint(path.string()), ec);
  // A full backlog (would_block) also means that somebody listens.
  if (!ec || ec == asio::error::would_block || ec == asio::error::in_progress) {
    fail(path, "another process answers on it (is a balancer already running with this "
               "state_dir?); refusing to start");
  }
  if (ec != asio::error::connection_refused) {
    fail(path, fmt::format("cannot tell whether it is in use: {}", ec.message()));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail(path, fmt::format("cannot remove the stale socket: {}", std::strerror(errno)));
  }
  spdlog::info("admin: replaced the stale socket {} (left by a balancer that is gone)", path.string());
}

}  // namespace

AdminServer::AdminServer(Runtime& runtime, fs::path socket_path)
    : path_(std::move(socket_path)), state_(std::make_shared<State>(runtime.control_context())) {
  asio::io_context& context = runtime.control_context();
  std::error_code fs_ec;
  fs::create_directories(path_.parent_path(), fs_ec);
  if (fs_ec) fail(path_, fmt::format("cannot create its folder: {}", fs_ec.message()));
  clear_stale_socket(context, path_);

  boost::system::error_code ec;
  local::acceptor& acceptor = state_->acceptor;
  acceptor.open(local(), ec);
  if (!ec) acceptor.bind(local::endpoint(path_.string()), ec);
  if (ec) fail(path_, fmt::format("cannot bind: {}", ec.message()));
  // Owner only, set before listen(): until then every connect is refused, so there is no
  // moment at which another user could connect.
  struct stat st{};
  if (::chmod(path_.c_str(), S_IRUSR | S_IWUSR) != 0 || ::lstat(path_.c_str(), &st) != 0 ||
      !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0600) {
    const std::string reason = std::strerror(errno);
    acceptor.close(ec);
    ::unlink(path_.c_str());
    fail(path_, fmt::format("cannot restrict it to its owner (mode 0600): {}", reason));
  }
  device_ = st.st_dev;
  inode_ = st.st_ino;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    const std::string reason = ec.message();
    acceptor.close(ec);
    ::unlink(path_.c_str());
    fail(path_, fmt::format("cannot listen: {}", reason));
  }
  asio::co_spawn(context, accept_loop(state_, runtime), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      spdlog::error("admin: the accept loop ended by an error: {}", x.what());
    }
  });
  spdlog::info("admin API on {}", path_.string());
}

AdminServer::~AdminServer() { stop(); }

std::unique_ptr<AdminServer> AdminServer::start(Runtime& runtime, const config::Config& cfg) {
  try {
    return std::make_unique<AdminServer>(runtime, cfg.admin.socket);
  } catch (const std::runtime_error& e) {
    const fs::path& dir = cfg.service.state_dir;
    const fs::path inside = cfg.admin.socket.parent_path().lexically_relative(dir);
    const bool in_state_dir = !inside.empty() && *inside.begin() != "..";
    std::error_code ec;
    const bool usable = fs::is_directory(dir, ec) && ::access(dir.c_str(), W_OK | X_OK) == 0;
    if (!in_state_dir || usable) throw;
    spdlog::error("{}; state_dir {} cannot be used, so the balancer runs without its admin API "
                  "(pbadmin cannot reach it; SIGHUP still reloads)",
                  e.what(), dir.string());
    return nullptr;
  }
}

void AdminServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  state_->stopped = true;
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
  for (Stream* stream : state_->connections) stream->socket().close(ignored);
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace pb::control
