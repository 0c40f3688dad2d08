#pragma once

// Header-only on purpose: pb_test_support is linked into every test executable, including unit
// tests of areas below `control`, so it must not depend on the runtime. Only executables that
// link pb_core (the integration tests) include this header.

#include <memory>
#include <stdexcept>
#include <string>

#include "protobalance/config/config.hpp"
#include "protobalance/control/runtime.hpp"
#include "support/process.hpp"

namespace pb::test {

// An in-process balancer (control::Runtime) started on a configuration text, for tests that use
// run-time operations such as node states. The configuration file is written to a temporary
// directory (relative paths in it resolve there). Stops the runtime when destroyed.
class RuntimeHarness {
 public:
  // Throws std::runtime_error with every diagnostic when the configuration is refused, and
  // whatever Runtime::start() throws when a listener cannot be bound. `threads` overrides the
  // file's [service] threads when not 0.
  explicit RuntimeHarness(const std::string& toml, unsigned threads = 0) {
    const auto file = dir_.write("pb.toml", toml);
    auto loaded = control::load_config(file);
    if (!loaded.config) {
      std::string message = "configuration refused:";
      for (const auto& error : loaded.errors) message.append("\n").append(error.to_string());
      throw std::runtime_error(message);
    }
    runtime_ = std::make_unique<control::Runtime>(loaded.config,
                                                  control::RuntimeOptions{.threads = threads});
    runtime_->start();
  }

  control::Runtime& runtime() { return *runtime_; }

  // Bound address of a listener, "127.0.0.1:PORT" (or "[::1]:PORT"). Throws for an unknown name.
  std::string address(const std::string& listener) const {
    // A copy: the runtime may hand out its table by value (it changes on reload).
    const auto endpoints = runtime_->listener_endpoints();
    const auto& endpoint = endpoints.at(listener);
    const auto host = endpoint.address().to_string();
    if (endpoint.address().is_v6()) return "[" + host + "]:" + std::to_string(endpoint.port());
    return host + ":" + std::to_string(endpoint.port());
  }

  // The run-time operation behind `pbadmin node set`; false for an unknown cluster or node.
  bool set_node_state(const std::string& cluster, const std::string& node,
                      config::AdminState state) {
    return runtime_->set_node_state(cluster, node, state);
  }

 private:
  TempDir dir_;  // declared first: outlives the runtime that was configured from it
  std::unique_ptr<control::Runtime> runtime_;
};

}  // namespace pb::test
