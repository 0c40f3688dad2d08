// libFuzzer target for the TLS ClientHello reader (src/net/tls_client_hello.cpp).
// Invariants checked on every input (abort() on a broken one):
// - a complete result's size is > 0 and <= the input size; its name is empty or a DNS name,
//   lower-case, equal to the name as sent up to case; an invalid one has a reason;
// - one reader fed the input as growing prefixes (one byte more each call) reaches the same
//   decision, name and size as a reader given the whole input at once;
// - once decided, a reader keeps its decision.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "protobalance/net/tls_client_hello.hpp"

namespace {

namespace tls = pb::net::tls;

void check(bool ok) {
  if (!ok) std::abort();
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  tls::ClientHelloReader whole;
  const tls::Status status = whole.read(input);
  if (status == tls::Status::complete) {
    check(whole.size() > 0 && whole.size() <= size);
    const auto& name = whole.server_name();
    const auto& sent = whole.server_name_as_sent();
    check(name.size() == sent.size());
    check(name.empty() || tls::is_dns_name(name));
    for (std::size_t i = 0; i < name.size(); ++i) check(name[i] == lower(sent[i]));
  } else if (status == tls::Status::invalid) {
    check(!whole.error().empty());
  } else {
    check(size < tls::kMaxClientHelloBytes);
  }

  tls::ClientHelloReader bytewise;
  for (std::size_t n = 0; n <= size; ++n) {
    if (bytewise.read(input.first(n)) != tls::Status::incomplete) break;
  }
  check(bytewise.status() == status);
  if (status == tls::Status::complete) {
    check(bytewise.size() == whole.size());
    check(bytewise.server_name() == whole.server_name());
  }
  check(whole.read(input) == status);
  return 0;
}
