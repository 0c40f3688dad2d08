#include "protobalance/pbadmin/daemon_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <cstdio>
#include <exception>
#include <vector>

#include "protobalance/config/config.hpp"
#include "protobalance/version.hpp"

namespace pb::pbadmin {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

using LocalStream = beast::basic_stream<asio::local::stream_protocol, asio::any_io_executor,
                                        beast::unlimited_rate_policy>;

constexpr std::chrono::seconds kConnectTimeout{5};
// A reload binds listeners and reads the file; everything else answers at once.
constexpr std::chrono::seconds kAnswerTimeout{30};
constexpr std::size_t kMaxAnswer = 64 * 1024 * 1024;

// What happened to one request/answer exchange.
struct Exchange {
  boost::system::error_code ec;
  bool connected = false;
  http::response<http::string_body> response;
};

asio::awaitable<void> exchange(LocalStream& stream, const std::string& socket_path,
                               http::request<http::string_body>& request, Exchange& result) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  stream.expires_after(kConnectTimeout);
  auto [connect_ec] =
      co_await stream.async_connect(asio::local::stream_protocol::endpoint(socket_path), use_tuple);
  if (connect_ec) {
    result.ec = connect_ec;
    co_return;
  }
  result.connected = true;
  stream.expires_after(kAnswerTimeout);
  auto [write_ec, written] = co_await http::async_write(stream, request, use_tuple);
  if (write_ec) {
    result.ec = write_ec;
    co_return;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxAnswer);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
  result.ec = read_ec;
  if (!read_ec) result.response = parser.release();
}

// The daemon's message in an error answer, or a generic one naming the status.
std::string error_message(const DaemonReply& reply) {
  if (const auto* object = reply.body.if_object()) {
    if (const auto* error = object->if_contains("error"); error != nullptr && error->is_string()) {
      return std::string(error->as_string());
    }
  }
  return "the balancer answered with HTTP status " + std::to_string(reply.status);
}

}  // namespace

std::string percent_encode(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", static_cast<unsigned char>(c));
      out += escaped;
    }
  }
  return out;
}

std::variant<DaemonReply, int> call_daemon(const Context& ctx, http::verb verb,
                                           const std::string& target, std::string body) {
  // Only the socket's keys must be right: the balancer is reachable (and `reload` reports the
  // errors as it found them) also while the rest of the file is being edited.
  std::vector<config::Diagnostic> errors;
  const auto socket = config::find_admin_socket(ctx.config_file, errors);
  if (!socket) {
    for (const config::Diagnostic& d : errors) ctx.err << d.to_string() << '\n';
    if (errors.empty()) ctx.err << ctx.config_file << ": cannot load the configuration\n";
    return kExitUsage;
  }
  const std::string socket_path = socket->string();

  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::user_agent, std::string("pbadmin/") + pb::kVersion);
  request.set(http::field::accept, "application/json");
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.body() = std::move(body);
  request.keep_alive(false);
  request.prepare_payload();

  asio::io_context context;
  LocalStream stream(context);
  Exchange result;
  std::exception_ptr failure;
  asio::co_spawn(context, exchange(stream, socket_path, request, result),
                 [&failure](std::exception_ptr e) { failure = e; });
  context.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      ctx.err << "pbadmin: cannot talk to the balancer at " << socket_path << ": " << e.what()
              << '\n';
    }
    return kExitUnreachable;
  }
  if (result.ec) {
    const auto& ec = result.ec;
    if (!result.connected && ec == boost::system::errc::no_such_file_or_directory) {
      ctx.err << "pbadmin: the balancer is not running: no admin socket at " << socket_path << '\n';
    } else if (!result.connected && ec == asio::error::connection_refused) {
      ctx.err << "pbadmin: the balancer is not running: nothing answers on " << socket_path
              << " (a socket left behind)\n";
    } else if (ec == beast::error::timeout) {
      ctx.err << "pbadmin: the balancer did not answer on " << socket_path << " within "
              << (result.connected ? kAnswerTimeout : kConnectTimeout).count() << " s\n";
    } else {
      ctx.err << "pbadmin: cannot " << (result.connected ? "talk to" : "reach")
              << " the balancer at " << socket_path << ": " << ec.message() << '\n';
    }
    return kExitUnreachable;
  }
  DaemonReply reply;
  reply.status = result.response.result_int();
  boost::system::error_code parse_ec;
  reply.body = json::parse(result.response.body(), parse_ec);
  if (parse_ec) reply.body = nullptr;
  return reply;
}

int refused(const Context& ctx, const DaemonReply& reply) {
  if (ctx.json && !reply.body.is_null()) ctx.out << json::serialize(reply.body) << '\n';
  ctx.err << "pbadmin: " << error_message(reply) << '\n';
  return kExitFailed;
}

std::variant<json::object, int> request_object(const Context& ctx, http::verb verb,
                                              const std::string& target, std::string body) {
  auto outcome = call_daemon(ctx, verb, target, std::move(body));
  if (const int* code = std::get_if<int>(&outcome)) return *code;
  DaemonReply& reply = std::get<DaemonReply>(outcome);
  if (reply.status < 200 || reply.status > 299) return refused(ctx, reply);
  json::object* object = reply.body.if_object();
  if (object == nullptr) {
    ctx.err << "pbadmin: the balancer's answer is not a JSON object\n";
    return kExitFailed;
  }
  return std::move(*object);
}

int request_and_print(const Context& ctx, http::verb verb, const std::string& target,
                      std::string body, const std::function<void(const json::object&)>& print) {
  auto outcome = request_object(ctx, verb, target, std::move(body));
  if (const int* code = std::get_if<int>(&outcome)) return *code;
  const json::object& object = std::get<json::object>(outcome);
  if (ctx.json) {
    ctx.out << json::serialize(object) << '\n';
  } else {
    print(object);
  }
  return kExitOk;
}

std::string text_of(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return {};
  if (const auto* s = value->if_string()) return std::string(*s);
  return json::serialize(*value);
}

}  // namespace pb::pbadmin
