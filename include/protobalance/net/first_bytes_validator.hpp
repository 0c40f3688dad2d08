#pragma once

// First-bytes validation (`[listener.validate] expect = '...'`, `max_bytes`): decides from the
// first bytes a client sends whether they can be the protocol the listener expects. Pure code:
// the caller peeks or buffers the bytes (and forwards them untouched); this only looks.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace pb::net {

// A compiled expectation: a Perl regular expression as Boost.Regex reads it (case-sensitive
// unless it says "(?i)"), matched against the connection's first bytes from byte 0 (as if it
// began with \A; a leading '^' is allowed and changes nothing), looking at most at max_bytes.
// Boost.Regex's partial matching is what lets it decide early:
// - match: the first bytes (or a prefix of them) match the expression: forward the connection;
// - need_more: no match yet, but more bytes could still complete one: wait (up to the timeout);
// - mismatch: no continuation can match, or max_bytes bytes are in without a match: close.
// The end of the bytes seen is never taken as the end of the stream ('$' and '\z' do not match
// there), since the client may still send more. Bytes are matched as they are (NUL and bytes
// over 0x7F included; no character set decoding). An expression so costly on some input that
// Boost.Regex gives up (its complexity limit) counts as a mismatch for that input: network
// input never throws out of check(). Immutable after creation: check() is const and may run on
// many threads at once.
class FirstBytesValidator {
 public:
  enum class Result : std::uint8_t { match, need_more, mismatch };

  // Compiles `expression`; max_bytes must be at least 1. On a bad expression returns nullopt
  // and sets `error` to what Boost.Regex says is wrong (for "FILE:LINE:COL: <error>").
  static std::optional<FirstBytesValidator> create(std::string_view expression,
                                                   std::size_t max_bytes, std::string& error);

  // `first_bytes`: everything the client has sent so far (bytes beyond max_bytes are ignored).
  Result check(std::span<const std::uint8_t> first_bytes) const;

  std::size_t max_bytes() const { return max_bytes_; }

 private:
  // The compiled boost::regex, kept out of this header (Boost.Regex's headers are heavy).
  struct Compiled;
  FirstBytesValidator(std::shared_ptr<const Compiled> compiled, std::size_t max_bytes)
      : compiled_(std::move(compiled)), max_bytes_(max_bytes) {}

  std::shared_ptr<const Compiled> compiled_;
  std::size_t max_bytes_;
};

}  // namespace pb::net
