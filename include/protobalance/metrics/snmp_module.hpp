#pragma once

// The boundary between the daemon and its SNMP module (protobalance-snmp.so). The module holds
// the AgentX sub-agent and is the only code linked against net-snmp, which brings OpenSSL, Perl
// and Kerberos along (3.4 MB resident at start, measured in BENCHMARKS.md); the daemon loads it
// with dlopen() only when `[snmp] enabled = true`. Both sides are built together from one tree
// with one compiler, so plain C++ types may cross; the module reaches the daemon only through
// DataSource, never by symbol.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pb::metrics::snmp {

// One row of pbNodeTable.
struct NodeRow {
  std::string cluster;
  std::string node;
  std::string address;
  long state = 1;  // available(1), draining(2), offline(3)
  long up = 1;     // true(1), false(2)
  std::uint64_t active = 0;
  std::uint64_t total = 0;
  std::uint64_t failures = 0;
  std::uint64_t bytes_to_node = 0;
  std::uint64_t bytes_to_client = 0;
};

// The pbTwin scalars: the link of a twin deployment ([twin]) to Redis.
struct TwinFigures {
  bool connected = false;
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t lookups_hit = 0;
  std::uint64_t lookups_miss = 0;
  std::uint64_t lookups_timeout = 0;
  std::uint64_t twins_heard = 0;  // in the last 10 minutes
};

// What the sub-agent reports, read at request time on the sub-agent's thread (thread-safe).
class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual std::uint64_t active_connections() const = 0;
  virtual std::optional<std::uint64_t> affinity_entries() const = 0;  // none without affinity
  virtual std::chrono::milliseconds uptime() const = 0;
  virtual void node_rows(std::vector<NodeRow>& rows) const = 0;  // replaces the contents
  virtual std::optional<TwinFigures> twin() const = 0;           // none without [twin]
};

// A running sub-agent. Destroying it unregisters from the master and stops its thread (within
// about a second).
class Agent {
 public:
  virtual ~Agent() = default;
};

struct AgentOptions {
  std::string agentx;       // the master's AgentX socket
  std::string version;      // pbVersion
  int ping_interval_seconds = 5;  // how often the master is pinged, and retried when absent
};

// The module's entry point, found with dlsym(kStartSymbol): starts the sub-agent thread and
// returns at once (a missing master is not an error). Returns null and sets `error` when the
// thread cannot be started. `source` must outlive the agent.
using StartFunction = Agent* (*)(const DataSource& source, const AgentOptions& options,
                                 std::string& error);
inline constexpr const char* kStartSymbol = "pb_snmp_start";
// Where the module is, relative to the directory of the protobalance executable (the build tree
// and an installation have the same layout: bin/ and lib/protobalance/).
inline constexpr const char* kModulePath = "../lib/protobalance/protobalance-snmp.so";

}  // namespace pb::metrics::snmp
