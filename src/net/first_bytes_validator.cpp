// Boost.Regex gives up on a search after this many matcher states (its default is 100 million,
// seconds of CPU for one check of a pathological expression on hostile bytes). A million is far
// more than a sane expression needs on max_bytes bytes, and bounds what one client can cost.
// Boost.Regex is header-only and this is the only file of the project that includes it (the
// header keeps it out), so the setting cannot differ between translation units.
#define BOOST_REGEX_MAX_STATE_COUNT 1000000

#include "protobalance/net/first_bytes_validator.hpp"

#include <algorithm>
#include <stdexcept>

#include <boost/regex.hpp>

namespace pb::net {

struct FirstBytesValidator::Compiled {
  boost::regex expression;
};

std::optional<FirstBytesValidator> FirstBytesValidator::create(std::string_view expression,
                                                               std::size_t max_bytes,
                                                               std::string& error) {
  if (max_bytes == 0) {
    error = "max_bytes must be at least 1";
    return std::nullopt;
  }
  try {
    auto compiled = std::make_shared<const Compiled>(
        Compiled{boost::regex(expression.begin(), expression.end(), boost::regex::perl)});
    return FirstBytesValidator(std::move(compiled), max_bytes);
  } catch (const boost::regex_error& e) {
    error = "bad regular expression '" + std::string(expression) + "': " + e.what();
    return std::nullopt;
  }
}

FirstBytesValidator::Result FirstBytesValidator::check(
    std::span<const std::uint8_t> first_bytes) const {
  const std::size_t n = std::min(first_bytes.size(), max_bytes_);
  const char* begin = reinterpret_cast<const char*>(first_bytes.data());
  if (n == 0) return Result::need_more;  // nothing seen yet (Boost finds no partial match in it)
  const char* end = begin + n;
  // match_continuous: from byte 0 only; match_partial: report "could still match";
  // match_not_eob / match_not_eol: the end of the bytes seen is neither the end of the stream
  // nor the end of a line ('\z', '\Z', '$' do not match there).
  const auto flags = boost::match_default | boost::match_continuous | boost::match_partial |
                     boost::match_not_eob | boost::match_not_eol;
  boost::cmatch m;
  bool found = false;
  try {
    found = boost::regex_search(begin, end, m, compiled_->expression, flags);
  } catch (const std::runtime_error&) {
    return Result::mismatch;  // complexity or memory limit hit on hostile input
  }
  if (!found) return Result::mismatch;
  if (m[0].matched) return Result::match;
  return n >= max_bytes_ ? Result::mismatch : Result::need_more;
}

}  // namespace pb::net
