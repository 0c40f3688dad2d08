#pragma once

#include <boost/json/object.hpp>

#include "protobalance/control/status.hpp"

namespace pb::control {

// The document behind GET /v1/status (what `pbadmin status --json` prints): listeners,
// clusters with their nodes, and the affinity entry count. Times are UTC text
// ("2026-11-21T19:45:03Z"), absent values null.
boost::json::object status_document(const Status& status);

}  // namespace pb::control
