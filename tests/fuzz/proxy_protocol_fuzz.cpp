// libFuzzer target for the PROXY protocol codec (src/net/proxy_protocol.cpp).
// Invariants checked on every input (abort() on a broken one):
// - a complete result's size is > 0, <= the input size and <= kMaxHeader; an invalid one has a
//   reason;
// - decisions are monotonic: feeding the input prefix by prefix gives `incomplete` until the
//   first decision, and that decision (status, size, header) is the one for the whole input;
// - a complete non-local header re-encodes (v1 and v2) to bytes that parse back, whole, to the
//   same endpoints (and the same authority for v2).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "protobalance/net/proxy_protocol.hpp"

namespace {

namespace proxy = pb::net::proxy;

void check(bool ok) {
  if (!ok) std::abort();
}

bool same(const proxy::Header& a, const proxy::Header& b) {
  return a.local == b.local && a.source == b.source && a.destination == b.destination &&
         a.authority == b.authority;
}

void check_reencode(const proxy::Header& h) {
  char line[proxy::kMaxV1];
  const std::size_t n1 = proxy::encode_v1(h.source, h.destination, line);
  check(n1 > 0 && n1 <= proxy::kMaxV1);
  proxy::Header again;
  auto r = proxy::parse(
      std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(line), n1), again);
  check(r.status == proxy::Status::complete && r.size == n1);
  check(!again.local && again.source == h.source && again.destination == h.destination);

  static std::uint8_t binary[proxy::kMaxV2];
  const std::size_t n2 = proxy::encode_v2(h.source, h.destination, h.authority, binary);
  check(n2 > 0 && n2 <= proxy::kMaxV2);
  again = proxy::Header{};
  r = proxy::parse(std::span<const std::uint8_t>(binary, n2), again);
  check(r.status == proxy::Status::complete && r.size == n2);
  check(same(again, h));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  proxy::Header whole;
  const auto result = proxy::parse(input, whole);
  switch (result.status) {
    case proxy::Status::complete:
      check(result.size > 0 && result.size <= size && result.size <= proxy::kMaxHeader);
      break;
    case proxy::Status::invalid:
      check(!result.error.empty());
      break;
    case proxy::Status::incomplete:
      check(size < proxy::kMaxHeader);
      break;
  }

  // Prefix by prefix, up to the first decision.
  for (std::size_t n = 0; n <= size; ++n) {
    proxy::Header h;
    const auto r = proxy::parse(input.first(n), h);
    if (r.status == proxy::Status::incomplete) continue;
    check(r.status == result.status);
    if (r.status == proxy::Status::complete) {
      check(n == r.size && r.size == result.size && same(h, whole));
    }
    break;
  }

  if (result.status == proxy::Status::complete && !whole.local) check_reencode(whole);
  return 0;
}
