#pragma once

#include <memory>

#include "protobalance/config/config.hpp"
#include "protobalance/metrics/snmp_module.hpp"
#include "protobalance/metrics/sources.hpp"

namespace pb::metrics {

// The root OID of PROTOBALANCE-MIB (config/snmp/PROTOBALANCE-MIB.txt): netSnmpPlaypen.7337.
inline constexpr const char* kMibRootOid = ".1.3.6.1.4.1.8072.9999.9999.7337";

// The AgentX sub-agent serving PROTOBALANCE-MIB: scalars (version, uptime, active connections,
// affinity entries) and the node table, from a status snapshot taken at request time.
//
// The sub-agent itself lives in the SNMP module (snmp_module.hpp), loaded when the first
// SnmpAgent is made: processes without SNMP never map net-snmp and its dependencies. It runs the
// net-snmp agent library on its own thread. When the master agent is absent or goes away,
// forwarding is not affected: the sub-agent logs it once and reconnects, checking every ping
// interval. Only one SnmpAgent may exist per process. Must be destroyed before what `status`
// reads.
class SnmpAgent {
 public:
  // How often the sub-agent pings the master, and retries when it has no connection.
  static constexpr int kPingIntervalSeconds = 5;

  // Starts the sub-agent thread and returns at once; never fails for want of a master agent.
  // Throws std::runtime_error("snmp: ...") when the module cannot be loaded or the sub-agent
  // cannot start (another SnmpAgent exists, ...).
  SnmpAgent(StatusSource status, const config::SnmpConfig& cfg, ExtraSources extra);
  // Unregisters from the master and stops the thread (within about a second).
  ~SnmpAgent();
  SnmpAgent(const SnmpAgent&) = delete;
  SnmpAgent& operator=(const SnmpAgent&) = delete;

 private:
  class Source;
  std::unique_ptr<Source> source_;
  std::unique_ptr<snmp::Agent> agent_;
};

}  // namespace pb::metrics
