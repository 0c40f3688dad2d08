#pragma once

#include <boost/beast/http/verb.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <functional>
#include <string>
#include <string_view>
#include <variant>

#include "protobalance/pbadmin/context.hpp"

// pbadmin's client of the daemon's admin API: HTTP/1.1 + JSON over the Unix socket that the
// configuration's [admin] socket names (see control/admin_server.hpp).
namespace pb::pbadmin {

// An answer of the daemon (any status).
struct DaemonReply {
  unsigned status = 0;
  boost::json::value body;  // null when the body is not JSON
};

// Sends one request to the daemon whose admin socket --config names. Returns its answer, or the
// exit code after printing one line on stderr: kExitUsage when the socket cannot be told from the
// file, kExitUnreachable when the socket is missing, refuses, or does not answer in time.
std::variant<DaemonReply, int> call_daemon(const Context& ctx, boost::beast::http::verb verb,
                                           const std::string& target, std::string body = {});

// Prints a refusal (one line on stderr; the answer's JSON on stdout with --json) and returns
// kExitFailed.
int refused(const Context& ctx, const DaemonReply& reply);

// Runs one request whose 2xx answer is a JSON object and returns that object; anything else
// (unreachable, a refusal, not an object) is reported and gives the exit code instead.
std::variant<boost::json::object, int> request_object(const Context& ctx,
                                                      boost::beast::http::verb verb,
                                                      const std::string& target,
                                                      std::string body = {});

// Runs one request whose 2xx answer is a JSON object: prints it (--json) or hands it to
// `print` for people. Other answers are refusals.
int request_and_print(const Context& ctx, boost::beast::http::verb verb, const std::string& target,
                      std::string body,
                      const std::function<void(const boost::json::object&)>& print);

// "a b/c" -> "a%20b%2Fc": everything but RFC 3986's unreserved characters is escaped.
std::string percent_encode(std::string_view text);

// A member of an answer as text: strings as they are, other values as JSON, "" when absent or
// null.
std::string text_of(const boost::json::object& object, std::string_view key);

}  // namespace pb::pbadmin
