#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "protobalance/control/status.hpp"

namespace pb::metrics {

// Affinity lookups on the hot path, by outcome: the client's node was taken (hit), the client
// was new or its entry had expired (miss), or its node could not take it and it was moved.
struct AffinityLookups {
  std::uint64_t hit = 0;
  std::uint64_t miss = 0;
  std::uint64_t moved = 0;
};

// Configuration reloads (SIGHUP, pbadmin reload) by outcome.
struct ConfigReloads {
  std::uint64_t ok = 0;
  std::uint64_t error = 0;
};

// Access log records by fate; their sum is every record submitted.
struct AccessLogCounts {
  std::uint64_t written = 0;
  std::uint64_t dropped = 0;  // the queue was full: the disk could not keep up
  std::uint64_t failed = 0;   // the file could not be written (disk full, ...)
};

// Values owned by other areas that the exporter and the SNMP sub-agent report when they are
// given. A source left empty is simply not exported (its metric family, or its SNMP scalar,
// is absent), so that a balancer never reports a zero it did not measure.
//
// Each function is called at scrape or SNMP-request time from the exporter's or the
// sub-agent's own thread, concurrently with the workers: it must be thread-safe and cheap
// (read atomics; take no lock that a worker holds on its hot path).
struct ExtraSources {
  std::function<std::uint64_t()> affinity_entries;  // protobalance_affinity_entries
  // By cluster name: protobalance_affinity_lookups_total{cluster,result}.
  std::function<std::map<std::string, AffinityLookups>()> affinity_lookups;
  std::function<ConfigReloads()> config_reloads;      // protobalance_config_reloads_total
  std::function<std::uint64_t()> store_write_errors;  // protobalance_store_write_errors_total
  std::function<std::uint64_t()> store_queue_depth;  // protobalance_affinity_store_queue_depth
  std::function<AccessLogCounts()> access_log;        // protobalance_access_log_records_total
  std::function<std::uint64_t()> blocks;              // protobalance_blocks
};

// Takes a status snapshot (control::take_status on the running balancer). Called at scrape or
// SNMP-request time from the exporter's or the sub-agent's thread: thread-safe, like the
// functions of ExtraSources below.
using StatusSource = std::function<control::Status()>;

// When this process started (wall clock), from /proc/self/stat when available (the same source
// as the standard process_start_time_seconds), else the time of the first call.
std::chrono::system_clock::time_point process_start_time();

}  // namespace pb::metrics
