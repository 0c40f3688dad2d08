#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/affinity/entry_store.hpp"

namespace pb::affinity {

// Where a client unknown to the local map may still be known: the entries other balancers
// share (a twin deployment, through Redis). The data path sees only this interface, so it needs
// no Redis client; control::Twins implements it.
class SharedLookup {
 public:
  // The shared entry's node, or nullopt (no entry, no answer in time, link down).
  using Done = std::function<void(std::optional<std::string> node)>;

  virtual ~SharedLookup() = default;

  // Asks for the client's entry in `cluster`. Returns false when it cannot ask at all (the link
  // is gone): then `done` is never called. Otherwise `done` is called exactly once, from a thread
  // that is not the caller's (or from within this call), within timeout() or soon after.
  virtual bool lookup(std::string_view cluster, const ClientKey& key, Done done) = 0;
  // How long an answer may take ([twin] lookup_timeout).
  virtual std::chrono::milliseconds timeout() const = 0;

 protected:
  SharedLookup() = default;
  SharedLookup(const SharedLookup&) = default;
  SharedLookup& operator=(const SharedLookup&) = default;
};

// Told of the local decisions the map takes that other balancers should know: a new entry or
// a moved one (record), an operator's pin and forget. Changes that came from a twin
// (Source::twin) are not reported back. Called on the thread that made the change (a worker or
// the control thread), outside the map's locks; must not block.
class AffinityObserver {
 public:
  virtual ~AffinityObserver() = default;
  // record() created the client's entry (`moved` false: the first decision for the client, which
  // a twin may have taken first) or moved it to `node` (`moved` true: it replaces the old one).
  virtual void decided(std::string_view cluster, const ClientKey& key, std::string_view node,
                       Clock::time_point now, bool moved) = 0;
  virtual void pinned(std::string_view cluster, const ClientKey& key, std::string_view node,
                      Clock::time_point now) = 0;
  virtual void forgotten(std::string_view cluster, const ClientKey& key) = 0;

 protected:
  AffinityObserver() = default;
  AffinityObserver(const AffinityObserver&) = default;
  AffinityObserver& operator=(const AffinityObserver&) = default;
};

}  // namespace pb::affinity
