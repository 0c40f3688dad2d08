#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace pb::config {

// What a node expects at the start of each connection: nothing, or a PROXY protocol header
// (v1 text, v2 binary) naming the client. The one name of the versions: the codec
// (net::proxy::Version) is this type, so that config and data path never translate.
enum class ProxyProtocol : std::uint8_t { off, v1, v2 };
std::string_view to_string(ProxyProtocol p);
// "off" | "v1" | "v2"; anything else (also "V1", "") is nullopt.
std::optional<ProxyProtocol> parse_proxy_protocol(std::string_view text);

}  // namespace pb::config
