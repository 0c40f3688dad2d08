#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/value.hpp>

// The admin API's request side, apart from any transport: the answer type, the request target
// (path segments and query) and the JSON body's fields. No I/O; see admin_api.hpp.
namespace pb::control {

inline constexpr std::size_t kAdminBodyLimit = 64 * 1024;
inline constexpr std::size_t kAdminHeaderLimit = 8 * 1024;

// One answer of the API, before it is put on the wire.
struct AdminResponse {
  unsigned status = 200;
  boost::json::value body;  // an object
  std::string allow;        // the Allow header of a 405, e.g. "PUT, DELETE"
  // The answer says a change is stored (a block, an unblock: `pbadmin blocks` reads the file):
  // the server sends it once the store's writer has committed what the request queued, and
  // serves other requests meanwhile.
  bool after_store = false;
};

// {"error": message} with `status`.
AdminResponse error_response(unsigned status, std::string message);

// A parsed request target: decoded path segments and query parameters.
struct RequestTarget {
  std::string path;  // as sent, without the query, for messages
  std::vector<std::string> segments;
  std::vector<std::pair<std::string, std::string>> query;
};

// Splits and percent-decodes a request target ("/v1/a%20b/?x=1&y"). Empty, doubled and trailing
// slashes name the same resource; '+' in the query is a space. Returns nullopt when the path
// does not start with '/' or an escape is broken.
std::optional<RequestTarget> parse_target(std::string_view target);

// A JSON request body: an object whose members are all known strings.
struct Fields {
  std::map<std::string, std::string, std::less<>> values;
};

// Parses `body` as such an object. Missing required members, other types and unknown members
// are refused with a 400 whose message names them and the expected fields.
std::variant<Fields, AdminResponse> parse_fields(std::string_view body,
                                                std::initializer_list<std::string_view> required,
                                                std::initializer_list<std::string_view> optional);

}  // namespace pb::control
