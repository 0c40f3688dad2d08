#include "protobalance/metrics/snmp_agent.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "protobalance/balance/node.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/version.hpp"

namespace pb::metrics {

namespace {

// The module's path: next to the executable's directory (see snmp::kModulePath).
std::filesystem::path module_path() {
  std::array<char, 4096> exe{};
  const ssize_t n = ::readlink("/proc/self/exe", exe.data(), exe.size() - 1);
  const std::filesystem::path dir =
      n > 0 ? std::filesystem::path(std::string(exe.data(), static_cast<std::size_t>(n))).parent_path()
            : std::filesystem::current_path();
  return (dir / snmp::kModulePath).lexically_normal();
}

// Loads the module once per process and returns its entry point. It is never unloaded: net-snmp
// keeps process-wide state.
snmp::StartFunction load_module() {
  static snmp::StartFunction start = nullptr;
  if (start != nullptr) return start;
  const auto path = module_path();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    throw std::runtime_error("snmp: cannot load the SNMP module: " +
                             std::string(why != nullptr ? why : path.string()));
  }
  start = reinterpret_cast<snmp::StartFunction>(::dlsym(handle, snmp::kStartSymbol));
  if (start == nullptr) {
    throw std::runtime_error("snmp: " + path.string() + " is not a Proto Balance SNMP module");
  }
  return start;
}

}  // namespace

// What the sub-agent reports, read from the runtime at request time.
class SnmpAgent::Source final : public snmp::DataSource {
 public:
  Source(const control::Runtime& runtime, ExtraSources extra)
      : runtime_(runtime), extra_(std::move(extra)) {}

  std::uint64_t active_connections() const override { return runtime_.active_sessions(); }

  std::optional<std::uint64_t> affinity_entries() const override {
    if (!extra_.affinity_entries) return std::nullopt;
    return extra_.affinity_entries();
  }

  std::chrono::milliseconds uptime() const override {
    const auto up = std::chrono::system_clock::now() - process_start_time();
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(up),
                    std::chrono::milliseconds(0));
  }

  void node_rows(std::vector<snmp::NodeRow>& rows) const override {
    rows.clear();
    const auto snapshot = runtime_.snapshot();
    for (const auto& [cluster_name, cluster] : snapshot->clusters) {
      for (const balance::Node& node : cluster->nodes()) {
        const balance::NodeRuntime& rt = *node.runtime;
        snmp::NodeRow& row = rows.emplace_back();
        row.cluster = cluster_name;
        row.node = node.name;
        row.address = node.address;
        row.state = static_cast<long>(rt.admin_state.load(std::memory_order_relaxed)) + 1;
        row.up = rt.up() ? 1 : 2;
        row.active = static_cast<std::uint64_t>(
            std::max<std::int64_t>(rt.active.load(std::memory_order_relaxed), 0));
        row.total = rt.total.load(std::memory_order_relaxed);
        row.failures = rt.failures_total();
        row.bytes_to_node = rt.bytes_to_node.load(std::memory_order_relaxed);
        row.bytes_to_client = rt.bytes_to_client.load(std::memory_order_relaxed);
      }
    }
  }

 private:
  const control::Runtime& runtime_;
  const ExtraSources extra_;
};

SnmpAgent::SnmpAgent(const control::Runtime& runtime, const config::SnmpConfig& cfg,
                     ExtraSources extra) {
  const snmp::StartFunction start = load_module();
  source_ = std::make_unique<Source>(runtime, std::move(extra));
  const snmp::AgentOptions options{cfg.agentx, pb::kVersion, kPingIntervalSeconds};
  std::string error;
  agent_.reset(start(*source_, options, error));
  if (!agent_) throw std::runtime_error("snmp: " + error);
}

// The agent first: its thread reads the source until it stops.
SnmpAgent::~SnmpAgent() { agent_.reset(); }

}  // namespace pb::metrics
