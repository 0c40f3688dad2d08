#include "protobalance/net/client_phase.hpp"

namespace pb::net {

std::string_view to_string(RejectReason reason) {
  switch (reason) {
    case RejectReason::no_node: return "no_node";
    case RejectReason::descriptors: return "descriptors";
    case RejectReason::proxy: return "proxy";
  }
  return "unknown";
}

}  // namespace pb::net
