#pragma once

#include <memory>

#include "protobalance/config/config.hpp"
#include "protobalance/metrics/prometheus.hpp"
#include "protobalance/metrics/snmp_agent.hpp"
#include "protobalance/metrics/sources.hpp"

namespace pb::control {
class Runtime;
}

namespace pb::metrics {

// The monitoring endpoints a configuration asks for: the Prometheus exporter when
// `[metrics] listen` is set, the SNMP sub-agent when `[snmp] enabled`. Both read `runtime` at
// request time, so they can start before the listeners (a metrics port that cannot be bound then
// stops the start-up before any client is accepted). Changes to these sections take effect at
// the next start, not on reload. Must be destroyed before `runtime`.
class AccessLog;

// The sources of the metrics that live outside the node and listener counters: affinity,
// reloads, store errors, and the access log (may be null).
ExtraSources runtime_sources(control::Runtime& runtime, const AccessLog* access_log);

class Monitoring {
 public:
  // Throws std::runtime_error("metrics: cannot listen on ADDR: why") when the exporter's
  // address cannot be bound. A missing SNMP master agent is not an error (see SnmpAgent).
  Monitoring(const control::Runtime& runtime, const config::Config& cfg, ExtraSources extra = {});
  ~Monitoring();
  Monitoring(const Monitoring&) = delete;
  Monitoring& operator=(const Monitoring&) = delete;

  // Null when not configured.
  const PrometheusExporter* exporter() const { return exporter_.get(); }

 private:
  std::unique_ptr<PrometheusExporter> exporter_;
  std::unique_ptr<SnmpAgent> snmp_;
};

}  // namespace pb::metrics
