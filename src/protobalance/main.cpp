// protobalance: the load balancer daemon. Parses the command line, loads the configuration and
// hands over to control::Runtime.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "protobalance/config/address.hpp"
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

// Builds the one-listener configuration of quick mode, or prints why it cannot.
std::shared_ptr<const pb::config::Config> quick_config(const std::string& listen,
                                                       const std::vector<std::string>& nodes,
                                                       const std::string& algorithm) {
  auto listen_ep = pb::config::parse_endpoint(listen, true);
  bool ok = true;
  if (auto* error = std::get_if<std::string>(&listen_ep)) {
    std::cerr << "--listen " << listen << ": " << *error << '\n';
    ok = false;
  }
  std::vector<pb::config::Endpoint> node_eps;
  for (const auto& node : nodes) {
    auto ep = pb::config::parse_endpoint(node, false);
    if (auto* error = std::get_if<std::string>(&ep)) {
      std::cerr << "--node " << node << ": " << *error << '\n';
      ok = false;
    } else {
      node_eps.push_back(std::get<pb::config::Endpoint>(ep));
    }
  }
  if (!ok) return nullptr;
  auto cfg = pb::config::make_quick_config(std::get<pb::config::Endpoint>(listen_ep), node_eps,
                                           algorithm, listen, nodes);
  std::vector<pb::config::Diagnostic> errors;
  pb::balance::validate(*cfg, errors);
  if (!errors.empty()) {
    for (const auto& error : errors) std::cerr << error.message << '\n';
    return nullptr;
  }
  return cfg;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Proto Balance: a TCP load balancer"};
  app.set_version_flag("--version", std::string("protobalance ") + pb::kVersion);
  std::string config_file;
  bool check_only = false;
  unsigned threads = 0;
  std::string listen;
  std::vector<std::string> nodes;
  std::string algorithm = "round_robin";
  std::string log_level;
  app.add_option("-c,--config", config_file, "Configuration file (TOML)");
  app.add_flag("--check", check_only, "Only validate the configuration, then exit");
  app.add_option("-t,--threads", threads, "Worker threads (overrides [service] threads; 0 = one per CPU)")
      ->check(CLI::Range(0U, 1024U));
  auto* listen_opt =
      app.add_option("--listen", listen, "Quick mode: address to listen on, e.g. 127.0.0.1:8080");
  auto* node_opt = app.add_option("--node", nodes, "Quick mode: a node address (repeatable)");
  app.add_option("--algorithm", algorithm, "Quick mode: balancing algorithm")->needs(listen_opt);
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error|critical|off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  listen_opt->needs(node_opt);
  node_opt->needs(listen_opt);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? kExitOk : kExitUsage;
  }
  if (config_file.empty() == listen.empty()) {
    std::cerr << "protobalance: give either --config FILE or --listen ADDR --node ADDR...\n"
              << "Run with --help for more information.\n";
    return kExitUsage;
  }

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
    cfg = quick_config(listen, nodes, algorithm);
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
