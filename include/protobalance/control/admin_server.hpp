#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <boost/json/value.hpp>

#include "protobalance/config/config.hpp"

// The admin API: HTTP/1.1 with JSON bodies on a Unix socket, served on the control thread (the
// one that runs Runtime::control_context()), never on a worker. pbadmin is its client.
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
// Status codes: 400 bad request (malformed JSON, missing or unknown fields, bad values),
// 404 unknown resource, listener, cluster, node or affinity entry, 405 wrong method (with
// Allow), 409 pin in a cluster without affinity, 413 body over 64 KiB, 422 reload refused,
// 431 header over 8 KiB, 503 a change while the balancer is stopping.
namespace pb::control {

class Runtime;

inline constexpr std::size_t kAdminBodyLimit = 64 * 1024;
inline constexpr std::size_t kAdminHeaderLimit = 8 * 1024;

// One answer of the API, before it is put on the wire.
struct AdminResponse {
  unsigned status = 200;
  boost::json::value body;  // an object
  std::string allow;        // the Allow header of a 405, e.g. "PUT, DELETE"
};

// Answers one request: `method` as sent ("GET"), `target` the request target (path and query,
// percent-encoded), `body` the raw body. Never throws: an unexpected exception becomes a 500.
// Control thread only (it changes the runtime).
AdminResponse handle_admin_request(Runtime& runtime, std::string_view method,
                                   std::string_view target, std::string_view body);

// The document behind GET /v1/status. Safe from any thread.
boost::json::object admin_status(Runtime& runtime);

class AdminServer {
 public:
  // Creates the socket at `socket_path` with mode 0600 and starts accepting on
  // runtime.control_context(); connections are served once that context runs. A socket file
  // left by a daemon that is gone is replaced. Throws std::runtime_error, naming the path, when
  // another process answers on the socket, the path exists and is not a socket, or it cannot
  // be created with owner-only access.
  AdminServer(Runtime& runtime, std::filesystem::path socket_path);
  ~AdminServer();  // stop()

  // Starts the admin API on cfg's [admin] socket. When that socket lies in a state_dir that
  // cannot be used (a file in the way, no write access), logs an error and returns null: as
  // with the database, forwarding does not depend on it, and the balancer runs without an admin
  // API (pbadmin then reports it unreachable; signals still work). Every other failure throws,
  // as the constructor does.
  static std::unique_ptr<AdminServer> start(Runtime& runtime, const config::Config& cfg);
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Stops accepting, closes open connections and removes the socket file (only if it is still
  // the one this server created). Idempotent.
  void stop();

  const std::filesystem::path& path() const { return path_; }

  // The acceptor and open connections, shared with the coroutines that serve them (defined in
  // admin_server.cpp).
  struct State;

 private:

  std::filesystem::path path_;
  std::shared_ptr<State> state_;  // shared with the connection coroutines
  // The socket file as created, so that stop() never removes a file someone else put there.
  dev_t device_ = 0;
  ino_t inode_ = 0;
  bool stopped_ = false;
};

}  // namespace pb::control
