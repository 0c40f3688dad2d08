// Fuzz target: the admin API's request handling (control::handle_admin_request), without the
// socket: the input is "METHOD\nTARGET\nBODY" (the first two lines, the rest is the body), run
// against a started balancer with a configuration file (so reload, node states, routes and
// affinity with its database are all reachable). An answer must be a JSON object with a status
// the API documents; a 500 (an exception escaped a handler) counts as a finding.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/spdlog.h>

#include "protobalance/control/admin_server.hpp"
#include "protobalance/control/runtime.hpp"

namespace {

constexpr const char* kConfig = R"(
[service]
threads = 1
state_dir = "var"
log_level = "off"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"

[[listener]]
name = "other"
listen = "127.0.0.1:0"
cluster = "spare"

[[cluster]]
name = "web"
algorithm = "least_connections"
connect_timeout = "100ms"
retry_interval = "1s"
[cluster.affinity]
enabled = true
[[cluster.node]]
name = "a"
address = "127.0.0.1:9"
fallover = "b"
[[cluster.node]]
name = "b"
address = "[::1]:9"

[[cluster]]
name = "spare"
algorithm = "hash"
hash_key = "000102030405060708090a0b0c0d0e0f"
[[cluster.node]]
name = "c"
address = "127.0.0.1:9"
)";

// One balancer for the whole run, as a daemon has (its state carries over between inputs, as it
// does between an operator's requests). Kept reachable from a global, so not a leak.
pb::control::Runtime* runtime() {
  static pb::control::Runtime* instance = [] {
    spdlog::set_level(spdlog::level::off);
    std::string dir_template = (std::filesystem::temp_directory_path() / "pb-fuzz-admin-XXXXXX").string();
    if (::mkdtemp(dir_template.data()) == nullptr) std::abort();
    const std::filesystem::path file = std::filesystem::path(dir_template) / "pb.toml";
    std::ofstream(file) << kConfig;
    auto loaded = pb::control::load_config(file);
    if (!loaded.config) std::abort();
    auto* r = new pb::control::Runtime(loaded.config, pb::control::RuntimeOptions{});
    r->start();
    return r;
  }();
  return instance;
}

bool documented(unsigned status) {
  switch (status) {
    case 200: case 400: case 404: case 405: case 409: case 413: case 422: case 431: case 503:
      return true;
    default:
      return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto take_line = [&input] {
    const std::size_t end = input.find('\n');
    const std::string_view line = input.substr(0, end);
    input.remove_prefix(end == std::string_view::npos ? input.size() : end + 1);
    return line;
  };
  const std::string_view method = take_line();
  const std::string_view target = take_line();
  const pb::control::AdminResponse answer =
      pb::control::handle_admin_request(*runtime(), method, target, input);
  if (!documented(answer.status)) std::abort();
  if (!answer.body.is_object()) std::abort();
  if ((answer.status == 405) == answer.allow.empty()) std::abort();
  return 0;
}
