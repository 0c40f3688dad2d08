#include "protobalance/metrics/monitoring.hpp"

#include "protobalance/control/runtime.hpp"
#include "protobalance/metrics/access_log.hpp"

#include <spdlog/spdlog.h>

#include <utility>

namespace pb::metrics {

Monitoring::Monitoring(const control::Runtime& runtime, const config::Config& cfg,
                       ExtraSources extra) {
  process_start_time();  // read /proc now (or take the fallback time), not at the first scrape
  // The one place where the reporters meet the runtime: each takes a status snapshot.
  const StatusSource status = [&runtime] { return control::take_status(runtime); };
  if (!cfg.metrics.listen.empty()) {
    exporter_ = std::make_unique<PrometheusExporter>(status, cfg.metrics, extra);
    spdlog::info("metrics: serving http://{}/metrics", exporter_->address());
  }
  if (cfg.snmp.enabled) {
    snmp_ = std::make_unique<SnmpAgent>(status, cfg.snmp, std::move(extra));
  }
}

// The sub-agent first: it unregisters from the master while the exporter may still be scraped.
Monitoring::~Monitoring() {
  snmp_.reset();
  exporter_.reset();
}

ExtraSources runtime_sources(control::Runtime& runtime, const AccessLog* access_log) {
  ExtraSources extra;
  extra.affinity_entries = [&runtime] { return std::uint64_t{runtime.affinity().size()}; };
  extra.blocks = [&runtime] { return runtime.blocks_in_force(); };
  extra.affinity_lookups = [&runtime] {
    std::map<std::string, AffinityLookups> out;
    for (const auto& [cluster, stats] : runtime.affinity_stats()) {
      out[cluster] = {stats->hit.load(std::memory_order_relaxed),
                      stats->miss.load(std::memory_order_relaxed),
                      stats->moved.load(std::memory_order_relaxed)};
    }
    return out;
  };
  extra.config_reloads = [&runtime] {
    return ConfigReloads{runtime.reloads_ok(), runtime.reloads_failed()};
  };
  if (auto* store = runtime.store()) {
    extra.store_write_errors = [store] { return store->write_errors(); };
    extra.store_queue_depth = [store] { return std::uint64_t{store->queued()}; };
  }
  if (access_log != nullptr) extra.access_log = [access_log] { return access_log->counts(); };
  return extra;
}

}  // namespace pb::metrics
