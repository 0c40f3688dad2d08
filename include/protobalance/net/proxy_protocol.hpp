#pragma once

// The PROXY protocol, versions 1 (text) and 2 (binary), as specified by HAProxy's
// doc/proxy-protocol.txt: pure functions, no sockets and no I/O, so that the client phase that
// reads a header in, the node phase that writes one out and the probes share one tested codec.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

#include "protobalance/config/proxy_protocol.hpp"

namespace pb::net::proxy {

// The versions as the configuration names them (one type: no translation on the data path).
using Version = config::ProxyProtocol;

inline constexpr std::size_t kMaxV1 = 107;   // whole v1 line including CRLF
inline constexpr std::size_t kMaxV2 = 4096;  // whole v2 header (16-byte fixed part + body)
inline constexpr std::size_t kMaxHeader = kMaxV2;

// What a header in says. `local`: v2 LOCAL command or v1 "PROXY UNKNOWN": use the connection's
// own addresses (source/destination are then unset).
struct Header {
  bool local = false;
  boost::asio::ip::tcp::endpoint source;       // the client
  boost::asio::ip::tcp::endpoint destination;  // the address the client connected to
  std::string authority;                       // v2 TLV PP2_TYPE_AUTHORITY (0x02) if present
};

enum class Status : std::uint8_t { incomplete, complete, invalid };
struct ParseResult {
  Status status = Status::incomplete;
  std::size_t size = 0;    // complete: the header's length in bytes (consume exactly this many)
  std::string_view error;  // invalid: a short static reason for the debug log ("bad signature",
                           // "v1 line too long", ...)
};

// Parses the bytes received so far at the start of a connection (all of them, from byte 0;
// call again with more bytes when it says incomplete). Detects v1 ("PROXY ") or v2 (the 12-byte
// signature) from the first bytes: as soon as the bytes seen cannot start either, it is invalid
// (so a client that is not a proxy is refused after its first byte, not at the timeout).
// v1 longer than kMaxV1 without CRLF, or v2 whose announced length exceeds kMaxV2: invalid.
// v2: version 2, command LOCAL (0x20) or PROXY (0x21); families AF_INET/AF_INET6 with STREAM;
// AF_UNSPEC/UNIX or DGRAM with PROXY command -> treated as local (addresses unusable) -- follow
// the spec (haproxy's doc/proxy-protocol.txt). TLVs are skipped except AUTHORITY; malformed TLV
// lengths -> invalid. v1: "PROXY TCP4 a b p q\r\n", "PROXY TCP6 ...", "PROXY UNKNOWN...\r\n"
// (anything after UNKNOWN up to CRLF is ignored). Strict number and address syntax (no leading
// zeros in ports beyond "0", ports <= 65535, addresses of the named family).
//
// Edges: `out` is assigned only when the result is complete (then all of its fields are set;
// a local header has default endpoints and an empty authority); bytes after the header (the
// client's first payload, sent in the same segment) are never looked at. v2 LOCAL ignores the
// whole body (family, addresses, TLVs), as the spec says; so does a PROXY header that comes out
// local (AF_UNSPEC, AF_UNIX, DGRAM). v2 PROXY AF_INET/AF_INET6 with a body shorter than its
// address block is invalid; a family or transport nibble the spec does not assign is invalid;
// with several AUTHORITY TLVs the first one counts. v1 IPv6 addresses with a zone ("%eth0")
// are invalid.
ParseResult parse(std::span<const std::uint8_t> data, Header& out);

// Encoders write into `out` and return the number of bytes written.
// When source and destination families differ, the IPv4 one is written IPv4-mapped and the
// header uses TCP6 / AF_INET6.
// v1: "PROXY TCP4 <src> <dst> <sport> <dport>\r\n" (or TCP6). `out` holds at least kMaxV1 bytes.
// (Returns 0 if `out` is smaller than the line; IPv6 zone ids are not written.)
std::size_t encode_v1(const boost::asio::ip::tcp::endpoint& source,
                      const boost::asio::ip::tcp::endpoint& destination, std::span<char> out);
// v2 with the PROXY command; `authority` (may be empty) goes in a PP2_TYPE_AUTHORITY TLV.
// Returns 0 if `out` is too small (use kMaxV2 or a buffer of 16 + 36 + 3 + authority.size()).
// (Also returns 0 if the header would exceed kMaxV2, which no receiver following this codec
// would accept; an authority is at most a DNS name, 255 bytes, in practice.)
std::size_t encode_v2(const boost::asio::ip::tcp::endpoint& source,
                      const boost::asio::ip::tcp::endpoint& destination,
                      std::string_view authority, std::span<std::uint8_t> out);
// What a probe / health check sends first to a node that expects a header: v1 "PROXY UNKNOWN\r\n",
// v2 the 16-byte LOCAL header (AF_UNSPEC, length 0); empty for `off`.
std::string_view local_header(Version v);

}  // namespace pb::net::proxy
