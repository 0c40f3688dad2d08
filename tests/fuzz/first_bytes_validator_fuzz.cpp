// libFuzzer target for the first-bytes validator (src/net/first_bytes_validator.cpp) with a
// fixed expression (the example, plus a case-insensitive one with a repetition).
// Invariants (abort() on a broken one): no exception escapes; need_more only below max_bytes;
// decisions are monotonic over prefixes: once a prefix matches, every longer input matches;
// once a prefix mismatches, every longer input mismatches (these expressions have no
// look-ahead, so a decision cannot depend on later bytes).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <span>
#include <string>

#include "protobalance/net/first_bytes_validator.hpp"

namespace {

using pb::net::FirstBytesValidator;
using Result = FirstBytesValidator::Result;

void check(bool ok) {
  if (!ok) std::abort();
}

const FirstBytesValidator& validator(int which) {
  static const auto make = [](const char* expression) {
    std::string error;
    auto v = FirstBytesValidator::create(expression, 256, error);
    if (!v) std::abort();
    return *v;
  };
  static const FirstBytesValidator http = make("^(GET|HEAD|POST|PUT|DELETE|OPTIONS) /");
  static const FirstBytesValidator other = make("(?i)^(\\w+:){2,}[0-9a-f]*\\r\\n");
  return which == 0 ? http : other;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  for (int which = 0; which < 2; ++which) {
    const auto& v = validator(which);
    std::optional<Result> decided;
    const std::size_t last = std::min(size, v.max_bytes() + 1);
    for (std::size_t n = 0; n <= last; ++n) {
      Result r = Result::mismatch;
      try {
        r = v.check(input.first(n));
      } catch (...) {
        std::abort();
      }
      if (r == Result::need_more) {
        check(n < v.max_bytes() && !decided);
      } else if (decided) {
        check(r == *decided);
      } else {
        decided = r;
      }
    }
  }
  return 0;
}
