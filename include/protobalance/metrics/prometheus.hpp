#pragma once

#include <memory>
#include <string>

#include "protobalance/config/config.hpp"
#include "protobalance/metrics/sources.hpp"

namespace pb::control {
class Runtime;
}

namespace pb::metrics {

// Every metric of the contract as Prometheus text (exposition format 0.0.4): what /metrics
// serves. Reads the runtime's atomics and the given extra sources now, walking the current
// snapshot, so that nodes removed by a reload are gone and the workers pay nothing per
// connection. Safe from any thread.
std::string render_text(const control::Runtime& runtime, const ExtraSources& extra);

// The Prometheus exporter: prometheus-cpp's pull exposer (civetweb, its own threads) serving
// GET /metrics on `[metrics] listen`. Must be destroyed before `runtime`.
class PrometheusExporter {
 public:
  // Binds and starts serving. Throws std::runtime_error("metrics: cannot listen on ADDR: why")
  // when the address cannot be bound.
  PrometheusExporter(const control::Runtime& runtime, const config::MetricsConfig& cfg,
                     ExtraSources extra);
  ~PrometheusExporter();
  PrometheusExporter(const PrometheusExporter&) = delete;
  PrometheusExporter& operator=(const PrometheusExporter&) = delete;

  // The bound address, "127.0.0.1:9187" or "[::1]:9187" (port 0 in the config resolved).
  const std::string& address() const { return address_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace pb::metrics
