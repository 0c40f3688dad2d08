#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/affinity/affinity_map.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/control/admin_request.hpp"
#include "protobalance/control/admin_routes.hpp"
#include "protobalance/control/status.hpp"
#include "protobalance/net/block_list.hpp"

// The admin API: HTTP/1.1 with JSON bodies on a Unix socket (the transport is AdminServer, in
// admin_server.hpp), served on the control thread, never on a worker. pbadmin is its client.
//
// Resources (every body is JSON; every error is {"error": "message"} with its status code):
//   GET    /v1/status                              listeners, clusters, nodes and counters
//   PUT    /v1/clusters/{c}/nodes/{n}/state        {"state": "draining"} (also available,
//                                                  offline, green, yellow, red)
//   POST   /v1/reload                              {"ok", "changes": [..], "errors": [..]};
//                                                  422 when the file is refused
//   PUT    /v1/listeners/{l}/route                 {"cluster": "x"}: new connections go there
//   DELETE /v1/listeners/{l}/route                 back to the configured cluster
//   PUT    /v1/affinity                            {"cluster", "client", "node"}: pin a client
//   DELETE /v1/affinity?client=ADDR[&cluster=C]    forget a client (all clusters with affinity
//                                                  when no cluster is given)
//   GET    /v1/blocks                              {"blocks": [{network, listener, created,
//                                                  expires}]} (listener/expires null: every
//                                                  listener / no end; times ISO 8601 UTC)
//   PUT    /v1/blocks                              {"network", "for"?, "listener"?}: block new
//                                                  connections (and close running ones)
//   DELETE /v1/blocks?network=N[&listener=L]       remove the blocks of N (of every listener
//                                                  unless L is given)
// Status codes: 400 bad request (malformed JSON, missing or unknown fields, bad values),
// 404 unknown resource, listener, cluster, node, affinity entry or block, 405 wrong method (with
// Allow), 409 pin in a cluster without affinity, 413 body over 64 KiB, 422 reload refused,
// 431 header over 8 KiB, 503 a change while the balancer is stopping.
namespace pb::control {

// What a reload did: either the changes applied, or the errors that kept the old configuration.
struct ReloadResult {
  bool ok = false;
  std::vector<std::string> changes;  // "node web/gamma added", ...
  std::vector<std::string> errors;   // FILE:LINE:COL: message, or a bind failure
};

// The balancer as the admin API's handlers see it: what they read and what they may change.
// Runtime is the real one; anything else (a fuzz harness) may stand in with plain state.
// Called on the control thread only.
class Balancer {
 public:
  virtual ~Balancer() = default;

  // The configuration in force.
  virtual const std::shared_ptr<const config::Config>& config() const = 0;
  // True once a stop has begun: the API then refuses changes.
  virtual bool stopping() const = 0;
  virtual Status status() const = 0;
  virtual ReloadResult reload() = 0;
  // Sends a listener's new connections to `cluster` (empty = back to the configured one).
  // Returns an error message, or empty on success.
  virtual std::string route(const std::string& listener, const std::string& cluster) = 0;
  // Where each listener sends new connections now (route overrides applied).
  virtual std::map<std::string, std::string, std::less<>> routes() const = 0;
  // A node's operator-set state; nullopt for an unknown cluster or node.
  virtual std::optional<config::AdminState> node_state(const std::string& cluster,
                                                       const std::string& node) const = 0;
  // Returns false for an unknown cluster or node.
  virtual bool set_node_state(const std::string& cluster, const std::string& node,
                              config::AdminState state) = 0;
  virtual affinity::AffinityMap& affinity() = 0;

  // The block list. block() adds `block`, or replaces the one of the same network and listener;
  // new connections it covers are refused at once and running ones are closed. Returns an error
  // message (an unknown listener), or empty on success. Also the one call that applies a block
  // decided elsewhere (a twin).
  virtual std::string block(const net::Block& block) = 0;
  // Removes the blocks of `network`: of every listener, or of `listener` only when given.
  // Returns what was removed (empty: there was none).
  virtual std::vector<net::Block> unblock(const config::Network& network,
                                          const std::optional<std::string>& listener) = 0;
  // The blocks in force, in the order they were made.
  virtual std::vector<net::Block> blocks() const = 0;
};

// The API's route table, its handlers bound to `balancer` (which must outlive the table).
AdminRouteTable admin_routes(Balancer& balancer);

// Answers one request: `method` as sent ("GET"), `target` the request target (path and query,
// percent-encoded), `body` the raw body. Never throws: an unexpected exception becomes a 500.
AdminResponse handle_admin_request(Balancer& balancer, std::string_view method,
                                   std::string_view target, std::string_view body);

}  // namespace pb::control
