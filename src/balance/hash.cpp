// Client-address hashing with weighted rendezvous (highest random weight) hashing.
//
// For every candidate the client gets a pseudo-random number u in (0,1) from SipHash-2-4 keyed
// with the cluster's hash_key over (client address, node name hash); the score
// -load_factor / ln(u) is highest for exactly one node, and each node wins with probability
// load_factor / sum of load factors. Because a score depends only on the key, the client and that
// one node:
//  - every balancer with the same key and node names sends a client to the same node (no shared
//    state, no coordination, survives restarts);
//  - removing a node moves only the clients that were on it; adding one takes only its own share;
//  - the key keeps outsiders from crafting addresses that pile onto one node.
//
// The client is its IPv4 address (IPv4-mapped IPv6 counts as IPv4, so dual-stack listeners agree
// with v4 ones) or its IPv6 /64, since one host or home network usually owns a whole /64 and
// rotates privacy addresses within it.

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include <sodium.h>

#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

static_assert(crypto_shorthash_BYTES == 8 && crypto_shorthash_KEYBYTES == 16);

class RendezvousHash final : public Algorithm {
 public:
  explicit RendezvousHash(const std::array<std::uint8_t, 16>& key) : key_(key) {}

  std::uint32_t pick(const PickInput& in) override {
    // Message: client bytes (4 or 8) followed by the node's name hash (8, little-endian).
    std::array<unsigned char, 16> message{};
    const std::size_t client_len = client_bytes(in.client, message.data());

    std::uint32_t best = in.candidates.front();
    double best_score = -std::numeric_limits<double>::infinity();
    for (const std::uint32_t node : in.candidates) {
      const Node& n = in.nodes[node];
      put_le64(message.data() + client_len, n.name_hash);
      const double score = rendezvous_score(siphash(message.data(), client_len + 8),
                                             in.load_factor(node));
      // Strictly greater: on an exact tie (practically never) the lower index wins, the same in
      // every process.
      if (score > best_score) {
        best = node;
        best_score = score;
      }
    }
    return best;
  }

 private:
  // Writes the bytes that identify the client into out (room for 8); returns how many.
  static std::size_t client_bytes(const boost::asio::ip::address& client, unsigned char* out) {
    if (client.is_v4()) {
      const auto bytes = client.to_v4().to_bytes();
      std::memcpy(out, bytes.data(), bytes.size());
      return bytes.size();
    }
    const auto v6 = client.to_v6();
    if (v6.is_v4_mapped()) {
      const auto bytes =
          boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_bytes();
      std::memcpy(out, bytes.data(), bytes.size());
      return bytes.size();
    }
    const auto bytes = v6.to_bytes();
    std::memcpy(out, bytes.data(), 8);  // the /64 network prefix
    return 8;
  }

  static void put_le64(unsigned char* out, std::uint64_t value) {
    for (int i = 0; i < 8; ++i) out[i] = static_cast<unsigned char>(value >> (8 * i));
  }

  std::uint64_t siphash(const unsigned char* data, std::size_t len) const {
    std::array<unsigned char, crypto_shorthash_BYTES> out{};
    crypto_shorthash(out.data(), data, len, key_.data());
    std::uint64_t value = 0;
    for (int i = 7; i >= 0; --i) value = (value << 8) | out[static_cast<std::size_t>(i)];
    return value;
  }

  static double rendezvous_score(std::uint64_t hash, double load_factor) {
    if (!(load_factor > 0.0)) return -std::numeric_limits<double>::infinity();
    // The top 53 bits, centred in their interval: u is never 0 (ln = -inf) nor 1 (ln = 0).
    const double u = (static_cast<double>(hash >> 11) + 0.5) * 0x1.0p-53;
    return -load_factor / std::log(u);
  }

  std::array<std::uint8_t, 16> key_;
};

}  // namespace

std::unique_ptr<Algorithm> make_hash(const AlgorithmParams& params) {
  if (!params.cluster.hash_key) throw std::invalid_argument(validate_hash(params.cluster));
  // Idempotent and thread-safe; SipHash needs no random source, but libsodium asks for it first.
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialise");
  return std::make_unique<RendezvousHash>(*params.cluster.hash_key);
}

std::string validate_hash(const config::ClusterConfig& cluster) {
  if (cluster.hash_key) return {};
  return "algorithm \"hash\" needs hash_key = \"<32 hex digits>\"";
}

}  // namespace pb::balance
