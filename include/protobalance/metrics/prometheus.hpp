#pragma once

#include <memory>
#include <string>

#include "protobalance/config/config.hpp"
#include "protobalance/control/status.hpp"
#include "protobalance/metrics/sources.hpp"

namespace pb::metrics {

// Every metric of the contract as Prometheus text (exposition format 0.0.4): what /metrics
// serves, from one status snapshot and the given extra sources. Nodes removed by a reload are
// not in the snapshot, and the workers pay nothing per connection.
std::string render_text(const control::Status& status, const ExtraSources& extra);

// The Prometheus exporter: prometheus-cpp's pull exposer (civetweb, its own threads) serving
// GET /metrics on `[metrics] listen`, taking a status snapshot at each scrape. Must be destroyed
// before what `status` reads.
class PrometheusExporter {
 public:
  // Binds and starts serving. Throws std::runtime_error("metrics: cannot listen on ADDR: why")
  // when the address cannot be bound.
  PrometheusExporter(StatusSource status, const config::MetricsConfig& cfg, ExtraSources extra);
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
