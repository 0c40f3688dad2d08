#include "protobalance/config/network.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

namespace pb::config {

namespace {

namespace ip = boost::asio::ip;

// Built by appending: GCC 12 reports a false -Wrestrict for a literal + std::string&& at -O2.
std::string quoted(std::string_view text) {
  std::string result;
  result.reserve(text.size() + 2);
  result += '"';
  result += text;
  result += '"';
  return result;
}

}  // namespace

std::string Network::to_string() const {
  const ip::address_v6 address(network);
  if (v4) {
    return ip::make_address_v4(ip::v4_mapped, address).to_string() + "/" +
           std::to_string(prefix - 96);
  }
  return address.to_string() + "/" + std::to_string(prefix);
}

bool Network::contains(const ip::address& address) const {
  const auto bytes = as_v6_bytes(address);
  for (unsigned bit = 0; bit < prefix; ++bit) {
    const auto mask = static_cast<unsigned char>(0x80u >> (bit % 8));
    if ((bytes[bit / 8] & mask) != (network[bit / 8] & mask)) return false;
  }
  return true;
}

NetworkResult parse_network(std::string_view text) {
  const auto slash = text.find('/');
  const std::string_view address_text = text.substr(0, slash);
  const bool v6 = address_text.find(':') != std::string_view::npos;
  const std::string_view allowed = v6 ? "0123456789abcdefABCDEF:." : "0123456789.";
  const auto bad_address = [&] {
    return NetworkResult{std::nullopt,
                         "bad network " + quoted(text) +
                             ": expected an IPv4 or IPv6 address, optionally "
                             "followed by /LENGTH (\"192.0.2.0/24\", \"2001:db8::/32\")"};
  };
  if (address_text.empty() || address_text.size() > 45 ||
      address_text.find_first_not_of(allowed) != std::string_view::npos) {
    return bad_address();
  }
  std::array<char, 46> buffer{};
  std::memcpy(buffer.data(), address_text.data(), address_text.size());
  Network cidr;
  cidr.v4 = !v6;
  if (v6) {
    if (::inet_pton(AF_INET6, buffer.data(), cidr.network.data()) != 1) return bad_address();
  } else {
    std::array<unsigned char, 4> bytes{};
    if (::inet_pton(AF_INET, buffer.data(), bytes.data()) != 1) return bad_address();
    cidr.network = ip::make_address_v6(ip::v4_mapped, ip::address_v4(bytes)).to_bytes();
  }

  const unsigned max = v6 ? 128 : 32;
  unsigned length = max;
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const auto bad_length = [&] {
      return NetworkResult{std::nullopt, "bad prefix length in " + quoted(text) + ": expected 0.." +
                                             std::to_string(max) + " after the /"};
    };
    if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0') ||
        digits.find_first_not_of("0123456789") != std::string_view::npos) {
      return bad_length();
    }
    length = 0;
    for (char c : digits) length = length * 10 + static_cast<unsigned>(c - '0');
    if (length > max) return bad_length();
  }
  cidr.prefix = v6 ? length : 96 + length;

  // Host bits must be zero.
  Network masked = cidr;
  for (unsigned bit = masked.prefix; bit < 128; ++bit) {
    masked.network[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
  }
  if (masked.network != cidr.network) {
    return {std::nullopt,
            "host bits are set in " + quoted(text) + ": the network is " + masked.to_string()};
  }
  return {cidr, {}};
}

ip::address_v6::bytes_type as_v6_bytes(const ip::address& address) {
  if (address.is_v6()) return address.to_v6().to_bytes();
  return ip::make_address_v6(ip::v4_mapped, address.to_v4()).to_bytes();
}

}  // namespace pb::config
