#pragma once

// Reads the TLS ClientHello at the start of a connection without terminating TLS, to learn the
// server name (SNI) the client asks for. Pure code: the caller peeks or buffers the bytes and
// forwards them untouched; this only looks at them.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace pb::net::tls {

// How many bytes from the start of the connection are examined at most (record headers
// included): a ClientHello that has not ended within them is invalid. Real ones are 200 bytes
// to ~2 KiB (post-quantum key shares), so 16 KiB leaves room and bounds the caller's buffer.
inline constexpr std::size_t kMaxClientHelloBytes = 16 * 1024;

enum class Status : std::uint8_t { incomplete, complete, invalid };

// An incremental reader of one connection's first bytes: TLS records of content type handshake
// (22) carrying a ClientHello handshake message, possibly split over many records and many
// segments. One reader per connection.
//
// Call read() with all the bytes received so far, from byte 0 (the same bytes as before plus
// any new ones; the reader remembers how far it got, so feeding byte by byte costs O(total)).
// It says:
// - incomplete: nothing wrong so far, more bytes are needed;
// - complete: the ClientHello has ended; server_name() is its host name, if any;
// - invalid: not TLS or not a well-formed ClientHello; error() gives a short static reason.
// The decision is made as early as the bytes allow: a first byte other than 22 is invalid at
// once; each record header (type 22, version 3.x, length 1..16384), the handshake type
// (ClientHello), its length (fitting kMaxClientHelloBytes) and every field of the ClientHello
// (version 3.x, session id <= 32, cipher suites even and non-empty, compression methods
// non-empty, extensions that tile their block exactly, one server_name extension with one
// host_name) is checked as soon as its bytes are in. Once complete or invalid, further calls
// return the same result and ignore the bytes. Bytes after the ClientHello (the rest of its
// record, later records) are not looked at.
//
// The host name: RFC 6066 host_name, checked as a DNS name (1..253 bytes, labels of 1..63
// letters, digits, '-' or '_', not starting or ending with '-', no trailing dot); an invalid
// one makes the ClientHello invalid. A ClientHello without the extension, or with an empty
// server_name extension (as servers send it, never clients), is complete with no name.
class ClientHelloReader {
 public:
  Status read(std::span<const std::uint8_t> data);

  Status status() const { return status_; }
  // The host name lower-cased (empty if the ClientHello had none); for routing.
  const std::string& server_name() const { return server_name_; }
  // The host name as the client sent it (same length; for a PROXY v2 AUTHORITY TLV).
  const std::string& server_name_as_sent() const { return server_name_as_sent_; }
  // invalid: a short static reason for the debug log ("not a TLS handshake record", ...).
  std::string_view error() const { return error_; }
  // complete: the bytes of the stream up to the ClientHello's last byte (record headers
  // included; the rest of its record, if any, is not counted). Never more than read() got.
  std::size_t size() const { return size_; }

 private:
  Status fail(std::string_view reason);
  Status parse_body();

  Status status_ = Status::incomplete;
  std::string_view error_;
  std::size_t size_ = 0;

  // Record layer: how many bytes of the stream have been taken in, and how many payload bytes
  // of the current record are still to come.
  std::size_t consumed_ = 0;
  std::size_t record_left_ = 0;
  std::size_t record_header_seen_ = 0;
  std::uint8_t record_header_[5] = {};

  // The handshake message, defragmented (header included); its announced total length.
  std::vector<std::uint8_t> message_;
  std::size_t message_size_ = 0;

  // ClientHello body parsing resumes here (offset in message_) and in this stage.
  enum class Stage : std::uint8_t { fixed, extensions, done };
  Stage stage_ = Stage::fixed;
  std::size_t at_ = 0;
  std::size_t extensions_end_ = 0;
  bool saw_server_name_ = false;

  std::string server_name_;
  std::string server_name_as_sent_;
};

// True if `name` is a host name as accepted above (case-insensitive; no trailing dot).
bool is_dns_name(std::string_view name);

}  // namespace pb::net::tls
