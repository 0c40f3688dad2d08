#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "protobalance/affinity/affinity_map.hpp"
#include "protobalance/affinity/shared_lookup.hpp"
#include "protobalance/balance/cluster.hpp"
#include "protobalance/net/access_record.hpp"
#include "protobalance/net/block_list.hpp"
#include "protobalance/net/client_phase.hpp"

namespace pb::net {


// Counters of one listener, kept across reloads (keyed by listener name).
struct ListenerStats {
  std::atomic<std::uint64_t> connections{0};
  std::atomic<std::int64_t> active{0};
  std::array<std::atomic<std::uint64_t>, kRejectReasons> rejected{};
};

// Outcomes of affinity lookups of one cluster, kept across reloads (keyed by cluster name).
struct AffinityStats {
  std::atomic<std::uint64_t> hit{0};    // served by the client's node
  std::atomic<std::uint64_t> miss{0};   // no entry: the algorithm chose, and was recorded
  std::atomic<std::uint64_t> moved{0};  // the entry's node could not serve for good: moved
};

// Where one listener's new connections go, as seen by one worker. Each worker holds its own
// copy, so taking a reference for a new session touches no cache line shared between threads.
struct Route {
  std::string listener;
  std::shared_ptr<balance::Cluster> cluster;
  std::shared_ptr<ListenerStats> stats;
  // Client affinity: the process-wide map (null without affinity) and the route's cluster's
  // lookup counters. Used only when the cluster has affinity enabled.
  affinity::AffinityMap* affinity = nullptr;
  std::shared_ptr<AffinityStats> affinity_stats;
  // Where finished connections are logged; null when the access log is off.
  AccessLogSink* access_log = nullptr;
  // What every connection of the listener goes through before a node is chosen, in order
  // (client_phase.hpp); empty for most listeners.
  std::vector<std::shared_ptr<const ClientPhase>> client_phases;
  // [[listener.route]] in order: where a connection goes when its TLS server name matched
  // route i (ClientFacts::sni_route); each has its route's cluster and no client phase.
  std::vector<std::shared_ptr<const Route>> sni_routes;
  // Twins ([twin]): where a client unknown to `affinity` is looked up before a node is chosen;
  // null without [twin]. Outlives every route that names it (the runtime keeps it).
  affinity::SharedLookup* shared_affinity = nullptr;
  // The block list shared by every listener (null in tests without one). A connection that goes
  // through client phases checks it once more on leaving them if it changed meanwhile
  // (Connection::blocked_meanwhile), so that a block made while the client was not yet known
  // (its PROXY header still awaited) applies to it.
  std::shared_ptr<const BlockList> blocks = nullptr;
};

}  // namespace pb::net
