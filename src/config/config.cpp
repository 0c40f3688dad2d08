#include "protobalance/config/config.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>
#include <utility>

#include "loader.hpp"
#include "protobalance/config/address.hpp"

namespace pb::config {

std::string_view to_string(AdminState state) {
  switch (state) {
    case AdminState::available:
      return "available";
    case AdminState::draining:
      return "draining";
    case AdminState::offline:
      return "offline";
  }
  return "unknown";
}

std::optional<AdminState> parse_admin_state(std::string_view text) {
  if (text == "available" || text == "green") {
    return AdminState::available;
  }
  if (text == "draining" || text == "yellow") {
    return AdminState::draining;
  }
  if (text == "offline" || text == "red") {
    return AdminState::offline;
  }
  return std::nullopt;
}

std::string_view to_string(ProxyProtocol p) {
  switch (p) {
    case ProxyProtocol::off:
      return "off";
    case ProxyProtocol::v1:
      return "v1";
    case ProxyProtocol::v2:
      return "v2";
  }
  return "unknown";
}

std::optional<ProxyProtocol> parse_proxy_protocol(std::string_view text) {
  if (text == "off") return ProxyProtocol::off;
  if (text == "v1") return ProxyProtocol::v1;
  if (text == "v2") return ProxyProtocol::v2;
  return std::nullopt;
}

const NodeConfig* ClusterConfig::find_node(std::string_view node_name) const {
  const auto it = std::find_if(nodes.begin(), nodes.end(),
                               [&](const NodeConfig& n) { return n.name == node_name; });
  return it == nodes.end() ? nullptr : &*it;
}

const ClusterConfig* Config::find_cluster(std::string_view cluster_name) const {
  const auto it = std::find_if(clusters.begin(), clusters.end(),
                               [&](const ClusterConfig& c) { return c.name == cluster_name; });
  return it == clusters.end() ? nullptr : &*it;
}

std::string Diagnostic::to_string() const {
  // A problem with the file as a whole (it cannot be read) has no position; print it the way
  // compilers do, "FILE: message", rather than invent a line 0.
  if (pos.line == 0) {
    return fmt::format("{}: {}", file, message);
  }
  return fmt::format("{}:{}:{}: {}", file, pos.line, pos.column, message);
}

namespace {

namespace fs = std::filesystem;
using detail::Loader;

LoadResult load_from_file(const fs::path& file, bool admin_socket_only) {
  Loader loader(file.string(), file.parent_path());
  if (admin_socket_only) {
    loader.only_admin_socket();
  }
  std::error_code ec;
  if (fs::is_directory(file, ec)) {
    return loader.fail("cannot read configuration file: it is a directory");
  }
  std::FILE* stream = std::fopen(file.c_str(), "rb");
  if (stream == nullptr) {
    return loader.fail(fmt::format("cannot read configuration file: {}", std::strerror(errno)));
  }
  std::string text;
  std::array<char, 8192> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), stream)) > 0) {
    text.append(buffer.data(), n);
  }
  const bool failed = std::ferror(stream) != 0;
  const int read_errno = errno;
  std::fclose(stream);
  if (failed) {
    return loader.fail(
        fmt::format("cannot read configuration file: {}", std::strerror(read_errno)));
  }
  fs::path absolute = fs::absolute(file, ec);
  return loader.run(text, ec ? file : absolute.lexically_normal());
}

}  // namespace

LoadResult load_file(const fs::path& file) {
  return load_from_file(file, false);
}

std::optional<fs::path> find_admin_socket(const fs::path& file, std::vector<Diagnostic>& errors) {
  LoadResult result = load_from_file(file, true);
  if (!result.config) {
    errors = std::move(result.errors);
    return std::nullopt;
  }
  return result.config->admin.socket;
}

LoadResult load_string(std::string_view text, const std::string& source_name,
                       const fs::path& base_dir) {
  return Loader(source_name, base_dir).run(text, fs::path{});
}

std::shared_ptr<const Config> make_quick_config(const Endpoint& listen,
                                                const std::vector<Endpoint>& nodes,
                                                std::string algorithm,
                                                const std::string& listen_text,
                                                const std::vector<std::string>& node_texts) {
  std::vector<NodeConfig> node_configs;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    NodeConfig node;
    node.name = fmt::format("node{}", i + 1);
    node.endpoint = nodes[i];
    node.address = i < node_texts.size() ? node_texts[i] : format_endpoint(nodes[i]);
    node_configs.push_back(std::move(node));
  }
  return make_quick_config(listen, std::move(node_configs), std::move(algorithm), listen_text,
                           std::nullopt);
}

std::shared_ptr<const Config> make_quick_config(
    const Endpoint& listen, std::vector<NodeConfig> nodes, std::string algorithm,
    const std::string& listen_text, std::optional<std::array<std::uint8_t, 16>> hash_key) {
  auto config = std::make_shared<Config>();
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  config->service.state_dir = (ec ? fs::path("var") : cwd / "var").lexically_normal();
  config->admin.socket = config->service.state_dir / "admin.sock";  // unused: no admin API

  ClusterConfig cluster;
  cluster.name = "default";
  cluster.algorithm = std::move(algorithm);
  cluster.hash_key = hash_key;
  cluster.nodes = std::move(nodes);
  config->clusters.push_back(std::move(cluster));

  ListenerConfig listener;
  listener.name = "default";
  listener.address = listen_text.empty() ? format_endpoint(listen) : listen_text;
  listener.endpoint = listen;
  listener.cluster = "default";
  config->listeners.push_back(std::move(listener));
  return config;
}

std::optional<std::string> read_password_file(const std::filesystem::path& file,
                                              std::string& error) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read {}: {}", file.string(), std::strerror(errno));
    return std::nullopt;
  }
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) {
    error = fmt::format("cannot read {}", file.string());
    return std::nullopt;
  }
  if (text.ends_with("\r\n")) {
    text.resize(text.size() - 2);
  } else if (text.ends_with('\n')) {
    text.pop_back();
  }
  if (text.empty()) {
    error = fmt::format("{} is empty; expected the Redis password", file.string());
    return std::nullopt;
  }
  if (text.find_first_of("\r\n") != std::string::npos) {
    error =
        fmt::format("{} holds more than one line; expected only the Redis password", file.string());
    return std::nullopt;
  }
  return text;
}

}  // namespace pb::config
