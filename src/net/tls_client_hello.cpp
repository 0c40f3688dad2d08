#include "protobalance/net/tls_client_hello.hpp"

#include <algorithm>
#include <optional>

namespace pb::net::tls {
namespace {

constexpr std::uint8_t kContentHandshake = 22;
constexpr std::uint8_t kHandshakeClientHello = 1;
constexpr std::size_t kRecordHeader = 5;
constexpr std::size_t kMaxRecordPayload = 16384;  // TLSPlaintext.length <= 2^14
constexpr std::size_t kHandshakeHeader = 4;
constexpr std::uint16_t kExtensionServerName = 0;
constexpr std::uint8_t kNameTypeHostName = 0;

std::size_t read_u16(const std::uint8_t* p) {
  return static_cast<std::size_t>((p[0] << 8) | p[1]);
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

bool is_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  char previous = '.';
  for (char c : name) {
    if (c == '.') {
      if (label == 0 || previous == '-') return false;
      label = 0;
    } else {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok || (label == 0 && c == '-') || ++label > 63) return false;
    }
    previous = c;
  }
  return label > 0 && previous != '-';
}

Status ClientHelloReader::fail(std::string_view reason) {
  status_ = Status::invalid;
  error_ = reason;
  return status_;
}

Status ClientHelloReader::read(std::span<const std::uint8_t> data) {
  while (status_ == Status::incomplete && consumed_ < data.size()) {
    if (record_left_ == 0) {
      // A record header, checked byte by byte so that garbage is refused at its first byte.
      const std::uint8_t b = data[consumed_++];
      record_header_[record_header_seen_++] = b;
      if (record_header_seen_ == 1 && b != kContentHandshake) {
        return fail("not a TLS handshake record");
      }
      if (record_header_seen_ == 2 && b != 3) return fail("bad record version");
      if (record_header_seen_ == 3 && b > 4) return fail("bad record version");
      if (record_header_seen_ == kRecordHeader) {
        record_left_ = read_u16(&record_header_[3]);
        record_header_seen_ = 0;
        if (record_left_ == 0 || record_left_ > kMaxRecordPayload) {
          return fail("bad record length");
        }
      }
      continue;
    }

    // Payload: append what belongs to the handshake message (all of it until its length is
    // known, then no more than it announces).
    std::size_t take = std::min(record_left_, data.size() - consumed_);
    if (message_size_ == 0) {
      take = std::min(take, kHandshakeHeader - message_.size());
    } else {
      take = std::min(take, message_size_ - message_.size());
    }
    message_.insert(message_.end(), data.begin() + static_cast<std::ptrdiff_t>(consumed_),
                    data.begin() + static_cast<std::ptrdiff_t>(consumed_ + take));
    consumed_ += take;
    record_left_ -= take;
    if (take == 0) return fail("bad ClientHello");  // unreachable: a whole message decides

    if (message_[0] != kHandshakeClientHello) return fail("not a ClientHello");
    if (message_size_ == 0 && message_.size() == kHandshakeHeader) {
      const std::size_t length =
          (std::size_t{message_[1]} << 16) | (std::size_t{message_[2]} << 8) | message_[3];
      message_size_ = kHandshakeHeader + length;
      if (message_size_ + kRecordHeader > kMaxClientHelloBytes) {
        return fail("ClientHello too long");
      }
      message_.reserve(message_size_);
    }
    if (message_size_ != 0) {
      if (parse_body() == Status::invalid) return status_;
      if (stage_ == Stage::done && message_.size() == message_size_) {
        size_ = consumed_;
        status_ = Status::complete;
        return status_;
      }
    }
  }
  // Many small records can make the stream longer than the message; bound the stream too.
  if (status_ == Status::incomplete && consumed_ >= kMaxClientHelloBytes) {
    return fail("ClientHello too long");
  }
  return status_;
}

// Checks the ClientHello fields whose bytes are in, resuming where the last call stopped.
// Returns invalid (via fail) or incomplete; the caller decides completeness.
Status ClientHelloReader::parse_body() {
  const std::size_t end = message_size_;
  const std::size_t have = message_.size();
  const std::uint8_t* m = message_.data();

  if (stage_ == Stage::fixed) {
    // The fixed fields are re-walked from the start on each call until all are in: a handful
    // of length fields, so this stays O(1) per call.
    std::size_t p = kHandshakeHeader;
    // need(n): the next n bytes must lie inside the message (else invalid) and be in (else
    // wait for them).
    const auto need = [&](std::size_t n) -> std::optional<Status> {
      if (p + n > end) return fail("truncated ClientHello");
      if (p + n > have) return Status::incomplete;
      return std::nullopt;
    };

    if (auto s = need(2)) return *s;  // legacy_version
    if (m[p] != 3) return fail("bad ClientHello version");
    p += 2 + 32;      // version, random
    if (auto s = need(1)) return *s;  // session id
    if (m[p] > 32) return fail("bad session id length");
    p += 1 + m[p];
    if (auto s = need(2)) return *s;  // cipher suites
    const std::size_t suites = read_u16(m + p);
    if (suites == 0 || suites % 2 != 0) return fail("bad cipher suites length");
    p += 2 + suites;
    if (auto s = need(1)) return *s;  // compression methods
    if (m[p] == 0) return fail("bad compression methods length");
    p += 1 + m[p];
    if (p > end) return fail("truncated ClientHello");
    if (p == end) {  // no extensions (allowed before TLS 1.3)
      stage_ = Stage::done;
      return Status::incomplete;
    }
    if (auto s = need(2)) return *s;  // extensions
    if (p + 2 + read_u16(m + p) != end) return fail("bad extensions length");
    at_ = p + 2;
    extensions_end_ = end;
    stage_ = Stage::extensions;
  }

  while (stage_ == Stage::extensions && at_ < extensions_end_) {
    if (extensions_end_ - at_ < 4) return fail("truncated extension");
    if (at_ + 4 > have) return Status::incomplete;
    const std::size_t type = read_u16(m + at_);
    const std::size_t length = read_u16(m + at_ + 2);
    if (extensions_end_ - at_ - 4 < length) return fail("truncated extension");
    if (type == kExtensionServerName) {
      if (saw_server_name_) return fail("duplicate server_name extension");
      if (at_ + 4 + length > have) return Status::incomplete;
      // ServerNameList: length (2), then entries of name_type (1), length (2), name.
      const std::uint8_t* d = m + at_ + 4;
      if (length != 0) {
        if (length < 2 || read_u16(d) != length - 2) return fail("bad server_name list");
        for (std::size_t q = 2; q < length;) {
          if (length - q < 3) return fail("bad server_name list");
          const std::uint8_t name_type = d[q];
          const std::size_t name_length = read_u16(d + q + 1);
          q += 3;
          if (length - q < name_length) return fail("bad server_name list");
          if (name_type == kNameTypeHostName) {
            if (!server_name_as_sent_.empty()) return fail("two host names");
            const std::string_view name(reinterpret_cast<const char*>(d + q), name_length);
            if (!is_dns_name(name)) return fail("bad host name");
            server_name_as_sent_.assign(name);
            server_name_.resize(name.size());
            std::transform(name.begin(), name.end(), server_name_.begin(), lower);
          }
          q += name_length;
        }
      }
      saw_server_name_ = true;
    }
    at_ += 4 + length;
  }
  if (stage_ == Stage::extensions) stage_ = Stage::done;
  return Status::incomplete;
}

}  // namespace pb::net::tls
