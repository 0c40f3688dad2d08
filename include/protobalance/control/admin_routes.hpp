#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/control/admin_request.hpp"

namespace pb::control {

// One request as a handler sees it: the parsed target, the values of the pattern's {names},
// and the raw body.
struct AdminRequest {
  std::string_view method;
  const RequestTarget& target;
  std::map<std::string, std::string, std::less<>> params;
  std::string_view body;
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

// The admin API's resources: method + path pattern -> handler. A pattern is a path whose
// segments are literals or {name}s ("/v1/clusters/{cluster}/nodes/{node}/state"); a {name}
// matches any one non-empty segment, percent-decoded.
class AdminRouteTable {
 public:
  void add(std::string_view method, std::string_view pattern, AdminHandler handler);

  // Runs the handler of the route that matches. Answers 400 when the target cannot be parsed,
  // 404 (naming every resource) when no pattern matches the path, and 405 with Allow (the
  // methods of that path, in the order they were added) when the path matches but the method
  // does not. Whatever the handler throws goes to the caller.
  AdminResponse dispatch(std::string_view method, std::string_view target,
                         std::string_view body) const;

 private:
  struct Route {
    std::string method;
    std::string pattern;
    std::vector<std::string> segments;
    AdminHandler handler;
  };
  // The {name} values when `route` matches the path's segments.
  static bool match(const Route& route, const std::vector<std::string>& segments,
                    std::map<std::string, std::string, std::less<>>& params);
  std::string resources() const;

  std::vector<Route> routes_;
};

}  // namespace pb::control
