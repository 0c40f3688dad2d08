#include "protobalance/affinity/client_key.hpp"

#include <algorithm>
#include <boost/system/error_code.hpp>
#include <charconv>
#include <cstring>
#include <random>

namespace pb::affinity {
namespace {

constexpr std::uint8_t kV4Offset = 96;  // an IPv4 prefix p is p + 96 in the mapped form

// Zeroes every bit of `bytes` after the first `prefix` bits.
void cut(std::array<std::uint8_t, 16>& bytes, std::uint8_t prefix) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const int keep = static_cast<int>(prefix) - static_cast<int>(i) * 8;
    if (keep >= 8) continue;
    bytes[i] =
        keep <= 0 ? std::uint8_t{0} : static_cast<std::uint8_t>(bytes[i] & (0xFFu << (8 - keep)));
  }
}

ClientKey v4_key(const boost::asio::ip::address_v4& a, std::uint8_t prefix) {
  ClientKey key;
  key.bytes = boost::asio::ip::make_address_v6(boost::asio::ip::v4_mapped, a).to_bytes();
  key.prefix = static_cast<std::uint8_t>(kV4Offset + std::min<std::uint8_t>(prefix, 32));
  cut(key.bytes, key.prefix);
  return key;
}

ClientKey v6_key(const boost::asio::ip::address_v6& a, std::uint8_t prefix) {
  ClientKey key;
  key.bytes = a.to_bytes();
  key.prefix = std::min<std::uint8_t>(prefix, 128);
  cut(key.bytes, key.prefix);
  return key;
}

std::uint64_t load64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The finalizer of SplitMix64: every input bit affects every output bit.
std::uint64_t mix(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::uint64_t process_seed() {
  static const std::uint64_t seed = [] {
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  }();
  return seed;
}

}  // namespace

bool ClientKey::is_v4() const {
  if (prefix < kV4Offset) return false;
  for (std::size_t i = 0; i < 10; ++i) {
    if (bytes[i] != 0) return false;
  }
  return bytes[10] == 0xFF && bytes[11] == 0xFF;
}

std::uint8_t ClientKey::family_prefix() const {
  return is_v4() ? static_cast<std::uint8_t>(prefix - kV4Offset) : prefix;
}

std::string ClientKey::to_string() const {
  std::string text;
  std::uint8_t full = 128;
  if (is_v4()) {
    text = boost::asio::ip::address_v4({bytes[12], bytes[13], bytes[14], bytes[15]}).to_string();
    full = 32;
  } else {
    text = boost::asio::ip::address_v6(bytes).to_string();
  }
  const std::uint8_t p = family_prefix();
  if (p != full) {
    text += '/';
    text += std::to_string(p);
  }
  return text;
}

bool ClientKey::overlaps(const ClientKey& other) const {
  // Both are already cut to their own prefix; cutting the longer one to the shorter prefix
  // tells whether it lies inside the shorter network.
  const std::uint8_t common = std::min(prefix, other.prefix);
  auto a = bytes;
  auto b = other.bytes;
  cut(a, common);
  cut(b, common);
  return a == b;
}

std::array<std::uint8_t, ClientKey::kBlobSize> ClientKey::to_blob() const {
  std::array<std::uint8_t, kBlobSize> blob{};
  std::memcpy(blob.data(), bytes.data(), bytes.size());
  blob[16] = prefix;
  return blob;
}

std::optional<ClientKey> ClientKey::from_blob(const void* data, std::size_t size) {
  if (data == nullptr || size != kBlobSize) return std::nullopt;
  ClientKey key;
  std::memcpy(key.bytes.data(), data, key.bytes.size());
  key.prefix = static_cast<const std::uint8_t*>(data)[16];
  if (key.prefix > 128) return std::nullopt;
  auto canonical = key.bytes;
  cut(canonical, key.prefix);
  if (canonical != key.bytes) return std::nullopt;
  return key;
}

std::array<std::uint8_t, 16> ClientKey::last_address() const {
  auto last = bytes;
  for (std::size_t i = 0; i < last.size(); ++i) {
    const int keep = static_cast<int>(prefix) - static_cast<int>(i) * 8;
    if (keep >= 8) continue;
    last[i] = keep <= 0 ? std::uint8_t{0xFF}
                        : static_cast<std::uint8_t>(last[i] | (0xFFu >> keep));
  }
  return last;
}

ClientKey ClientKey::widened(std::uint8_t new_prefix) const {
  ClientKey key = *this;
  key.prefix = std::min(prefix, new_prefix);
  cut(key.bytes, key.prefix);
  return key;
}

ClientKey make_key(const boost::asio::ip::address& address, std::uint8_t prefix_v4,
                   std::uint8_t prefix_v6) {
  if (address.is_v4()) return v4_key(address.to_v4(), prefix_v4);
  const auto v6 = address.to_v6();
  if (v6.is_v4_mapped()) {
    return v4_key(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6), prefix_v4);
  }
  return v6_key(v6, prefix_v6);
}

std::optional<ClientKey> parse_client(std::string_view text) {
  std::string_view addr_text = text;
  std::optional<unsigned> prefix;
  if (const auto slash = text.find('/'); slash != std::string_view::npos) {
    addr_text = text.substr(0, slash);
    const std::string_view digits = text.substr(slash + 1);
    unsigned value = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || ec != std::errc{} || end != digits.data() + digits.size()) {
      return std::nullopt;
    }
    prefix = value;
  }
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(addr_text), ec);
  if (ec) return std::nullopt;

  if (address.is_v4()) {
    const unsigned p = prefix.value_or(32);
    if (p > 32) return std::nullopt;
    return v4_key(address.to_v4(), static_cast<std::uint8_t>(p));
  }
  const auto v6 = address.to_v6();
  const unsigned p = prefix.value_or(128);
  if (p > 128) return std::nullopt;
  if (v6.is_v4_mapped() && p >= kV4Offset) {
    return v4_key(boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6),
                  static_cast<std::uint8_t>(p - kV4Offset));
  }
  return v6_key(v6, static_cast<std::uint8_t>(p));
}

std::size_t ClientKeyHash::operator()(const ClientKey& key) const noexcept {
  const std::uint64_t h = mix(load64(key.bytes.data()) ^ process_seed());
  return static_cast<std::size_t>(
      mix(h ^ load64(key.bytes.data() + 8) ^ (static_cast<std::uint64_t>(key.prefix) << 56)));
}

}  // namespace pb::affinity
