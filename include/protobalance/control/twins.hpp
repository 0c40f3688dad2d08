#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "protobalance/affinity/affinity_map.hpp"
#include "protobalance/affinity/shared_lookup.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/state/twin_link.hpp"

namespace pb::control {

// True when two [twin] tables ask for the same link (where in the file they are is ignored).
bool same_twin_config(const config::TwinConfig& a, const config::TwinConfig& b);

// The daemon's side of a twin deployment ([twin]): the glue between the twin link to Redis
// (state::TwinLink) and what this balancer decides and holds.
//  - Out: the affinity map's new and moved entries, pins and forgets (as its observer), and the
//    operator's node states and route overrides (called by the runtime) are published.
//  - In: the twins' affinity entries, pins and forgets go into the map (and so the local SQLite
//    copy) at once, on the link's thread; their node states and routes go to `Apply`, which the
//    runtime posts to its control thread.
//  - Lookups: a client unknown locally is asked for in Redis (affinity::SharedLookup).
// Created by the runtime when [twin] is configured; a reload that changes [twin] stops it and
// makes a new one. A stopped Twins stays valid (routes still name it): lookups then return false
// and publications are dropped.
class Twins final : public affinity::SharedLookup, public affinity::AffinityObserver {
 public:
  // What a twin's change does here. Called on a link thread; must not block.
  struct Apply {
    std::function<void(std::string cluster, std::string node, config::AdminState state)> node_state;
    // `cluster` empty: back to the configured one.
    std::function<void(std::string listener, std::string cluster)> route;
    // A twin's block or unblock: `subject` as on the wire (NETWORK or NETWORK@LISTENER, see
    // twin_link.hpp), `until` epoch = no end.
    std::function<void(std::string subject, std::chrono::system_clock::time_point until)> block;
    std::function<void(std::string subject)> unblock;
    // What a complete re-read of Redis found (after its block calls): see state::BlocksRead.
    std::function<void(state::BlocksRead read)> blocks_read;
  };

  // Starts the link (it connects in the background; a Redis that cannot be used is logged and
  // retried while the balancer forwards alone).
  Twins(const config::Config& cfg, affinity::AffinityMap& map, Apply apply);
  ~Twins() override;
  Twins(const Twins&) = delete;
  Twins& operator=(const Twins&) = delete;

  // Stops the link's threads (pending lookups are answered). Call before the map, the workers'
  // io_contexts or whatever `Apply` reaches go away.
  void stop();

  const config::TwinConfig& config() const { return config_; }
  // The clusters and their TTLs after a reload that kept the link.
  void set_clusters(const config::Config& cfg);

  // affinity::SharedLookup
  bool lookup(std::string_view cluster, const affinity::ClientKey& key, Done done) override;
  std::chrono::milliseconds timeout() const override { return config_.lookup_timeout; }

  // affinity::AffinityObserver
  void decided(std::string_view cluster, const affinity::ClientKey& key, std::string_view node,
               affinity::Clock::time_point now, bool moved) override;
  void pinned(std::string_view cluster, const affinity::ClientKey& key, std::string_view node,
              affinity::Clock::time_point now) override;
  void forgotten(std::string_view cluster, const affinity::ClientKey& key) override;

  // The operator's changes, shared with every twin.
  void publish_node_state(const std::string& cluster, const std::string& node,
                          config::AdminState state);
  // `cluster` empty: the route is reset.
  void publish_route(const std::string& listener, const std::string& cluster);
  // The operator's blocks, shared with every twin: subject = NETWORK or NETWORK@LISTENER (see
  // twin_link.hpp), `until` epoch = no end.
  void publish_block(const std::string& subject, std::chrono::system_clock::time_point until);
  void publish_unblock(const std::string& subject);

  // The link's figures; nullopt once stopped.
  std::optional<state::TwinStats> stats() const;

 private:
  void on_message(const state::TwinMessage& message);
  void on_conflict(const state::AffinityEntry& winner);
  void list_entries(const std::function<void(const state::AffinityEntry&)>& emit);
  // The cluster's TTL, or nullopt when the cluster is not configured here.
  std::optional<std::chrono::seconds> ttl_of(std::string_view cluster) const;

  config::TwinConfig config_;
  affinity::AffinityMap& map_;
  Apply apply_;
  mutable std::mutex clusters_mutex_;  // guards ttls_ (link threads, workers, control thread)
  affinity::TtlTable ttls_;
  // Guards link_: shared by publishers and lookups, exclusive only to take it away in stop().
  mutable std::shared_mutex link_mutex_;
  std::unique_ptr<state::TwinLink> link_;
};

}  // namespace pb::control
