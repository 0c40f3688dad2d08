// Fuzz target: the admin API's request handling (control::handle_admin_request: target parsing,
// body fields, the route table and every handler, the status document), without the socket.
// The input is "METHOD\nTARGET\nBODY" (the first two lines, the rest is the body). The handlers
// run against an in-memory Balancer: a configuration, node states, routes and a real affinity
// map (without a database), so that the request side builds without the coroutine code of the
// runtime. An answer must be a JSON object with a status the API documents; a 500 (an exception
// escaped a handler) counts as a finding.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>

#include "protobalance/affinity/affinity_map.hpp"
#include "protobalance/control/admin_api.hpp"

namespace {

using pb::config::AdminState;

constexpr const char* kConfig = R"(
[[listener]]
name = "web"
listen = "127.0.0.1:8080"
cluster = "web"

[[listener]]
name = "other"
listen = "127.0.0.1:8081"
cluster = "spare"

[[cluster]]
name = "web"
algorithm = "least_connections"
[cluster.affinity]
enabled = true
[cluster.health]
interval = "2s"
[[cluster.node]]
name = "a"
address = "127.0.0.1:9"
fallover = "b"
[[cluster.node]]
name = "b"
address = "[::1]:9"
state = "draining"

[[cluster]]
name = "spare"
algorithm = "hash"
hash_key = "000102030405060708090a0b0c0d0e0f"
[cluster.agent]
port = 9777
[[cluster.node]]
name = "c"
address = "127.0.0.1:9"
)";

// A balancer of plain state: what the handlers change is kept, as a daemon keeps it between
// an operator's requests.
class MemoryBalancer final : public pb::control::Balancer {
 public:
  MemoryBalancer() : affinity_(nullptr) {
    auto loaded = pb::config::load_string(kConfig, "fuzz.toml", "/tmp");
    if (!loaded.config) std::abort();
    config_ = loaded.config;
    for (const auto& cluster : config_->clusters) {
      for (const auto& node : cluster.nodes) states_[{cluster.name, node.name}] = node.state;
    }
  }

  const std::shared_ptr<const pb::config::Config>& config() const override { return config_; }
  bool stopping() const override { return false; }

  pb::control::Status status() const override {
    pb::control::Status status;
    const auto current = routes();
    for (const auto& l : config_->listeners) {
      auto& out = status.listeners.emplace_back();
      out.name = l.name;
      out.address = l.address;
      out.cluster = current.at(l.name);
      out.configured_cluster = l.cluster;
      out.rejected = {{"no_node", 1}};
    }
    for (const auto& c : config_->clusters) {
      auto& cluster = status.clusters.emplace_back();
      cluster.name = c.name;
      cluster.algorithm = c.algorithm;
      cluster.affinity = c.affinity.enabled;
      for (const auto& n : c.nodes) {
        auto& node = cluster.nodes.emplace_back();
        node.name = n.name;
        node.address = n.address;
        node.state = node.effective_state = states_.at({c.name, n.name});
        node.fallover = n.fallover.empty() ? std::nullopt : std::optional<std::string>(n.fallover);
        node.unavailable_since = std::chrono::system_clock::now();
        node.reachable = false;
        node.slow_start_remaining = std::chrono::milliseconds(1500);
        if (c.health) {
          node.check = pb::control::CheckStatus{};
          node.check->last_failure = pb::balance::CheckResult::mismatch;
          node.check->last_failure_detail = "HTTP/1.0 500\\r\\n";
        }
        if (c.agent) {
          node.agent = pb::control::AgentStatus{};
          node.agent_values = {{"cpu", 0.5}};
        }
      }
    }
    status.affinity_entries = affinity_.size();
    return status;
  }

  pb::control::ReloadResult reload() override {
    // Alternately applied and refused, so that both answers are reached.
    pb::control::ReloadResult result;
    result.ok = (++reloads_ % 2) == 1;
    if (result.ok) {
      result.changes = {"node web/gamma added"};
    } else {
      result.errors = {"fuzz.toml:1:1: refused"};
    }
    return result;
  }

  std::string route(const std::string& listener, const std::string& cluster) override {
    const bool known_listener = std::any_of(config_->listeners.begin(), config_->listeners.end(),
                                            [&](const auto& l) { return l.name == listener; });
    if (!known_listener) return "no listener named " + listener;
    if (!cluster.empty() && config_->find_cluster(cluster) == nullptr) {
      return "no cluster named " + cluster;
    }
    if (cluster.empty()) {
      overrides_.erase(listener);
    } else {
      overrides_[listener] = cluster;
    }
    return {};
  }

  std::map<std::string, std::string, std::less<>> routes() const override {
    std::map<std::string, std::string, std::less<>> out;
    for (const auto& l : config_->listeners) {
      const auto it = overrides_.find(l.name);
      out[l.name] = it == overrides_.end() ? l.cluster : it->second;
    }
    return out;
  }

  std::optional<AdminState> node_state(const std::string& cluster,
                                       const std::string& node) const override {
    const auto it = states_.find({cluster, node});
    if (it == states_.end()) return std::nullopt;
    return it->second;
  }

  bool set_node_state(const std::string& cluster, const std::string& node,
                      AdminState state) override {
    const auto it = states_.find({cluster, node});
    if (it == states_.end()) return false;
    it->second = state;
    return true;
  }

  pb::affinity::AffinityMap& affinity() override { return affinity_; }

  std::string block(const pb::net::Block& block) override {
    const auto same = std::find_if(blocks_.begin(), blocks_.end(), [&](const auto& b) {
      return b.network == block.network && b.listener == block.listener;
    });
    if (same != blocks_.end()) {
      *same = block;
    } else if (blocks_.size() < 64) {  // bounded: the fuzzer may block without end
      blocks_.push_back(block);
    }
    return {};
  }

  std::vector<pb::net::Block> unblock(const pb::config::Network& network,
                                      const std::optional<std::string>& listener) override {
    const auto lifted = std::stable_partition(blocks_.begin(), blocks_.end(), [&](const auto& b) {
      return !(b.network == network && (!listener || b.listener == *listener));
    });
    std::vector<pb::net::Block> removed(lifted, blocks_.end());
    blocks_.erase(lifted, blocks_.end());
    return removed;
  }

  std::vector<pb::net::Block> blocks() const override { return blocks_; }

 private:
  std::vector<pb::net::Block> blocks_;
  std::shared_ptr<const pb::config::Config> config_;
  std::map<std::pair<std::string, std::string>, AdminState> states_;
  std::map<std::string, std::string> overrides_;
  pb::affinity::AffinityMap affinity_;
  unsigned reloads_ = 0;
};

MemoryBalancer& balancer() {
  static MemoryBalancer* instance = [] {
    spdlog::set_level(spdlog::level::off);
    return new MemoryBalancer();  // reachable from here for the whole run: not a leak
  }();
  return *instance;
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
      pb::control::handle_admin_request(balancer(), method, target, input);
  if (!documented(answer.status)) std::abort();
  if (!answer.body.is_object()) std::abort();
  if ((answer.status == 405) == answer.allow.empty()) std::abort();
  return 0;
}
