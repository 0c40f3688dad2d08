#include "protobalance/metrics/snmp_agent.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>

#include "protobalance/control/status.hpp"
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

// What the sub-agent reports, from a status snapshot taken at request time.
class SnmpAgent::Source final : public snmp::DataSource {
 public:
  Source(StatusSource status, ExtraSources extra)
      : status_(std::move(status)), extra_(std::move(extra)) {}

  std::uint64_t active_connections() const override { return status_().active_sessions; }

  std::optional<std::uint64_t> affinity_entries() const override {
    if (!extra_.affinity_entries) return std::nullopt;
    return extra_.affinity_entries();
  }

  std::optional<snmp::TwinFigures> twin() const override {
    const control::Status status = status_();
    if (!status.twin) return std::nullopt;
    const control::TwinStatus& link = *status.twin;
    return snmp::TwinFigures{link.connected,       link.messages_sent, link.messages_received,
                             link.lookups_hit,     link.lookups_miss,  link.lookups_timeout,
                             link.instances.size()};
  }

  std::chrono::milliseconds uptime() const override {
    const auto up = std::chrono::system_clock::now() - process_start_time();
    return std::max(std::chrono::duration_cast<std::chrono::milliseconds>(up),
                    std::chrono::milliseconds(0));
  }

  void node_rows(std::vector<snmp::NodeRow>& rows) const override {
    rows.clear();
    for (const control::ClusterStatus& cluster : status_().clusters) {
      for (const control::NodeStatus& node : cluster.nodes) {
        snmp::NodeRow& row = rows.emplace_back();
        row.cluster = cluster.name;
        row.node = node.name;
        row.address = node.address;
        row.state = static_cast<long>(node.state) + 1;
        row.up = node.reachable ? 1 : 2;
        row.active = static_cast<std::uint64_t>(std::max<std::int64_t>(node.active, 0));
        row.total = node.total;
        row.failures = node.failures_total();
        row.bytes_to_node = node.bytes_to_node;
        row.bytes_to_client = node.bytes_to_client;
      }
    }
  }

 private:
  const StatusSource status_;
  const ExtraSources extra_;
};

SnmpAgent::SnmpAgent(StatusSource status, const config::SnmpConfig& cfg, ExtraSources extra) {
  const snmp::StartFunction start = load_module();
  source_ = std::make_unique<Source>(std::move(status), std::move(extra));
  const snmp::AgentOptions options{cfg.agentx, pb::kVersion, kPingIntervalSeconds};
  std::string error;
  agent_.reset(start(*source_, options, error));
  if (!agent_) throw std::runtime_error("snmp: " + error);
}

// The agent first: its thread reads the source until it stops.
SnmpAgent::~SnmpAgent() { agent_.reset(); }

}  // namespace pb::metrics
