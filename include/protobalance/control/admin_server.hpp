#pragma once

#include <sys/types.h>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>

#include "protobalance/config/config.hpp"

namespace pb::control {

class Runtime;

// The admin API's transport (admin_api.hpp is the API itself): HTTP/1.1 on a Unix socket with
// Boost.Beast, on the control thread (the one that runs Runtime::control_context()). Requests
// are read whole within a deadline and with the header and body limits of admin_request.hpp
// (431 and 413 beyond them), answered in order on keep-alive connections, and passed to
// handle_admin_request.
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
