#include "protobalance/net/client_phase.hpp"

namespace pb::net {

std::string_view to_string(RejectReason reason) {
  switch (reason) {
    case RejectReason::no_node: return "no_node";
    case RejectReason::descriptors: return "descriptors";
    case RejectReason::proxy: return "proxy";
    case RejectReason::denied: return "denied";
    case RejectReason::client_limit: return "client_limit";
    case RejectReason::client_rate: return "client_rate";
    case RejectReason::validation: return "validation";
    case RejectReason::tls: return "tls";
    case RejectReason::blocked: return "blocked";
  }
  return "unknown";
}

}  // namespace pb::net
