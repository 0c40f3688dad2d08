#include "protobalance/net/proxy_header_in.hpp"

#include <algorithm>

#include "protobalance/net/proxy_protocol.hpp"

namespace pb::net {

std::size_t ProxyHeaderIn::max_peek() const { return proxy::kMaxHeader; }

bool ProxyHeaderIn::trusts(const boost::asio::ip::address& source) const {
  return trusted_.empty() ||
         std::any_of(trusted_.begin(), trusted_.end(),
                     [&](const config::Network& c) { return c.contains(source); });
}

Verdict ProxyHeaderIn::inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                               ClientFacts& facts) const {
  if (!trusts(facts.source.address())) return Verdict::reject("source not in trusted_proxies");
  if (peeked.empty()) {
    return peer_closed ? Verdict::reject("closed before a PROXY header") : Verdict::more();
  }
  proxy::Header header;
  const proxy::ParseResult parsed = proxy::parse(peeked, header);
  switch (parsed.status) {
    case proxy::Status::incomplete:
      if (peer_closed) return Verdict::reject("closed within the PROXY header");
      return Verdict::more();
    case proxy::Status::invalid:
      return Verdict::reject(parsed.error);
    case proxy::Status::complete:
      break;
  }
  if (!header.local) {
    facts.source = header.source;
    facts.destination = header.destination;
    facts.has_destination = true;
  }
  return Verdict::pass(parsed.size);
}

}  // namespace pb::net
