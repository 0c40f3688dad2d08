// protobalance: the load balancer daemon. Parses the command line, loads the configuration and
// hands over to control::Runtime.
#include <array>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "protobalance/config/address.hpp"
#include "protobalance/config/quick_syntax.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/metrics/access_log.hpp"
#include "protobalance/metrics/monitoring.hpp"
#include "protobalance/version.hpp"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

void print_errors(const std::vector<pb::config::Diagnostic>& errors) {
  for (const auto& error : errors) std::cerr << error.to_string() << '\n';
}

// Prints a usage error of quick mode: "protobalance: ARGUMENT: message".
void quick_error(const std::string& argument, const std::string& message) {
  std::cerr << "protobalance: " << (argument.empty() ? "" : argument + ": ") << message << '\n';
}

// Quick mode's command line, as given.
struct QuickArgs {
  std::string listen;
  std::vector<std::string> nodes;  // --node ADDR (repeatable)
  std::vector<std::string> line;   // balance's syntax: nodes, '!' and '%'
  std::optional<std::string> algorithm;
  std::string hash_key;
};

// The nodes of --node ADDR..., each "host:port", in tier 1 with default settings. Prints the
// errors; returns nullopt if any.
std::optional<std::vector<pb::config::NodeConfig>> node_option_nodes(const QuickArgs& args) {
  std::vector<pb::config::NodeConfig> nodes;
  bool ok = true;
  for (const auto& text : args.nodes) {
    auto ep = pb::config::parse_endpoint(text, false);
    if (auto* error = std::get_if<std::string>(&ep)) {
      quick_error("--node " + text, *error);
      ok = false;
      continue;
    }
    pb::config::NodeConfig node;
    node.endpoint = std::get<pb::config::Endpoint>(ep);
    node.address = text;
    nodes.push_back(std::move(node));
  }
  if (!ok) return std::nullopt;
  return nodes;
}

// The nodes of a line in balance's syntax. Prints the errors; returns nullopt if any.
std::optional<std::vector<pb::config::NodeConfig>> line_nodes(const pb::config::QuickLine& line,
                                                               std::uint16_t listening_port) {
  std::vector<pb::config::NodeConfig> nodes;
  bool ok = true;
  for (const auto& quick : line.nodes) {
    if (!quick.port && listening_port == 0) {
      quick_error(quick.text, "no port given, and the listening port (0: any) cannot stand in; "
                              "write HOST:PORT");
      ok = false;
      continue;
    }
    const std::string address = quick.address(listening_port);
    auto ep = pb::config::parse_endpoint(address, false);
    if (auto* error = std::get_if<std::string>(&ep)) {
      quick_error(quick.text, *error);
      ok = false;
      continue;
    }
    pb::config::NodeConfig node;
    node.endpoint = std::get<pb::config::Endpoint>(ep);
    node.address = address;
    node.max_connections = quick.max_connections;
    node.load_factor = quick.load_factor;
    node.tier = quick.tier;
    nodes.push_back(std::move(node));
  }
  if (!ok) return std::nullopt;
  return nodes;
}

// Builds the one-listener configuration of quick mode, or prints why it cannot (every problem,
// each naming the argument at fault).
std::shared_ptr<const pb::config::Config> quick_config(const QuickArgs& args) {
  auto listen_ep = pb::config::parse_endpoint(args.listen, true);
  if (auto* error = std::get_if<std::string>(&listen_ep)) {
    quick_error("--listen " + args.listen, *error);
    return nullptr;
  }
  const auto listen = std::get<pb::config::Endpoint>(listen_ep);

  std::optional<std::vector<pb::config::NodeConfig>> nodes;
  std::string algorithm = args.algorithm.value_or("round_robin");
  if (!args.line.empty()) {
    auto parsed = pb::config::parse_balance_line(args.line);
    if (auto* error = std::get_if<pb::config::QuickSyntaxError>(&parsed)) {
      quick_error(error->argument, error->message);
      return nullptr;
    }
    const auto& line = std::get<pb::config::QuickLine>(parsed);
    auto chosen = pb::config::quick_algorithm(line, args.algorithm);
    if (auto* error = std::get_if<pb::config::QuickSyntaxError>(&chosen)) {
      quick_error(error->argument, error->message);
      return nullptr;
    }
    algorithm = std::get<std::string>(chosen);
    nodes = line_nodes(line, listen.port());
  } else {
    nodes = node_option_nodes(args);
  }
  if (!nodes) return nullptr;
  for (std::size_t i = 0; i < nodes->size(); ++i) (*nodes)[i].name = "node" + std::to_string(i + 1);

  // A hash cluster needs a key; quick mode has a fixed, documented one so that two balancers
  // started with the same line agree.
  std::optional<std::array<std::uint8_t, 16>> hash_key;
  if (algorithm == "hash" || !args.hash_key.empty()) {
    if (algorithm != "hash") {
      quick_error("--hash-key", "only the hash algorithm ('%' or --algorithm hash) uses a key");
      return nullptr;
    }
    const std::string_view hex =
        args.hash_key.empty() ? pb::config::kQuickHashKeyHex : std::string_view(args.hash_key);
    auto key = pb::config::parse_hash_key_hex(hex);
    if (auto* error = std::get_if<std::string>(&key)) {
      quick_error("--hash-key " + args.hash_key, *error);
      return nullptr;
    }
    hash_key = std::get<std::array<std::uint8_t, 16>>(key);
  }

  auto cfg = pb::config::make_quick_config(listen, std::move(*nodes), algorithm, args.listen,
                                           hash_key);
  std::vector<pb::config::Diagnostic> errors;
  pb::balance::validate(*cfg, errors);
  if (!errors.empty()) {
    for (const auto& error : errors) std::cerr << "protobalance: " << error.message << '\n';
    return nullptr;
  }
  return cfg;
}

constexpr const char* kQuickExamples = R"(Quick mode (no configuration file):
  protobalance --listen 127.0.0.1:8080 --node 127.0.0.1:9001 --node 127.0.0.1:9002
  protobalance --listen 0.0.0.0:8080 alpha beta                 # nodes on the listening port
  protobalance --listen 0.0.0.0:8080 alpha::256 ! beta::64 ! failover
      # '!' separates groups (tiers): beta only when alpha is full or down, ...
  protobalance --listen 0.0.0.0:8080 alpha:8081 beta:8081 %
      # '%' after a group: the client address chooses the node (hash)
  protobalance --listen 0.0.0.0:8080 alpha:8081:256:3 [2001:db8::1]:8081::1
      # HOST:PORT:MAX_CONNECTIONS:LOAD_FACTOR, empty fields = defaults
'%' groups hash with a built-in key (see README) unless --hash-key is given, so balancers started
with the same line agree. '!' and '%' are separate arguments. A line with '%' is one hash
cluster: every group of several nodes must end with '%' (a single-node group may go without).
)";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Proto Balance: a TCP load balancer"};
  app.set_version_flag("--version", std::string("protobalance ") + pb::kVersion);
  app.footer(kQuickExamples);
  std::string config_file;
  bool check_only = false;
  unsigned threads = 0;
  QuickArgs quick;
  std::string algorithm;
  std::string log_level;
  app.add_option("-c,--config", config_file, "Configuration file (TOML)");
  app.add_flag("--check", check_only, "Only validate the configuration, then exit");
  app.add_option("-t,--threads", threads, "Worker threads (overrides [service] threads; 0 = one per CPU)")
      ->check(CLI::Range(0U, 1024U));
  auto* listen_opt = app.add_option("--listen", quick.listen,
                                    "Quick mode: address to listen on, e.g. 127.0.0.1:8080");
  // One value per --node, so that a line in balance's syntax may follow it without being taken
  // for more --node values (which is refused below anyway, with a clear message).
  auto* node_opt = app.add_option("--node", quick.nodes, "Quick mode: a node address (repeatable)")
                       ->allow_extra_args(false);
  auto* algorithm_opt = app.add_option("--algorithm", algorithm, "Quick mode: balancing algorithm")
                            ->needs(listen_opt);
  app.add_option("--hash-key", quick.hash_key,
                 "Quick mode: key of the hash algorithm, 32 hex digits (default: the built-in key)")
      ->needs(listen_opt);
  auto* line_opt = app.add_option(
      "NODE", quick.line,
      "Quick mode: nodes in the syntax of balance: HOST[:PORT[:MAX_CONNECTIONS[:LOAD_FACTOR]]], "
      "'!' between groups (tiers), '%' after a group to hash");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  node_opt->needs(listen_opt);
  line_opt->needs(listen_opt);
  node_opt->excludes(line_opt);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (config_file.empty() == quick.listen.empty()) {
    std::cerr << "protobalance: give either --config FILE or --listen ADDR with nodes "
                 "(--node ADDR... or a line in balance's syntax)\n"
              << "Run with --help for more information.\n";
    return kExitUsage;
  }
  if (!quick.listen.empty() && quick.nodes.empty() && quick.line.empty()) {
    std::cerr << "protobalance: --listen " << quick.listen
              << ": no nodes; add --node ADDR or nodes in balance's syntax (see --help)\n";
    return kExitUsage;
  }
  if (algorithm_opt->count() > 0) quick.algorithm = algorithm;

  std::shared_ptr<const pb::config::Config> cfg;
  if (!config_file.empty()) {
    auto loaded = pb::control::load_config(config_file);
    if (!loaded.config) {
      print_errors(loaded.errors);
      return kExitUsage;
    }
    cfg = loaded.config;
    if (check_only) {
      std::cout << config_file << ": ok\n";
      return kExitOk;
    }
  } else {
    cfg = quick_config(quick);
    if (!cfg) return kExitUsage;
    if (check_only) return kExitOk;
  }

  auto logger = spdlog::stderr_logger_mt("protobalance");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_level(spdlog::level::from_str(log_level.empty() ? cfg->service.log_level : log_level));
  spdlog::flush_on(spdlog::level::info);

  try {
    // Declared first: sessions submit records to it until the Runtime's workers are joined.
    std::unique_ptr<pb::metrics::AccessLog> access_log;
    if (cfg->access_log.enabled) {
      access_log = std::make_unique<pb::metrics::AccessLog>(cfg->access_log.path);
    }
    pb::control::Runtime runtime(
        cfg, pb::control::RuntimeOptions{threads, access_log.get(), !log_level.empty()});
    // Before the listeners: a metrics port that cannot be bound stops the start-up.
    const pb::metrics::Monitoring monitoring(
        runtime, *cfg, pb::metrics::runtime_sources(runtime, access_log.get()));
    return runtime.run();
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return kExitFailure;
  }
}
