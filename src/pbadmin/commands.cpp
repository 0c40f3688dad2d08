#include "protobalance/pbadmin/commands.hpp"

#include <CLI/CLI.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <variant>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/config/duration.hpp"
#include "protobalance/config/network.hpp"
#include "protobalance/pbadmin/daemon_client.hpp"
#include "protobalance/pbadmin/database_reader.hpp"
#include "protobalance/pbadmin/format.hpp"
#include "protobalance/pbadmin/top.hpp"
#include "protobalance/state/database.hpp"
#include "protobalance/version.hpp"

namespace pb::pbadmin {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

// The chosen command, set by its subcommand's callback while parsing and run after parsing
// succeeded (so that a usage error anywhere on the line runs nothing).
using Action = std::function<int()>;

// Loads the configuration named by --config. On failure prints every diagnostic (one per line,
// FILE:LINE:COL: message) and returns null: the caller exits with kExitUsage.
std::shared_ptr<const config::Config> load_config(const Context& ctx) {
  config::LoadResult result = config::load_file(ctx.config_file);
  if (!result.errors.empty() || !result.config) {
    for (const config::Diagnostic& d : result.errors) ctx.err << d.to_string() << '\n';
    if (result.errors.empty()) ctx.err << ctx.config_file << ": cannot load the configuration\n";
    return nullptr;
  }
  return result.config;
}

struct AffinityListArgs {
  std::string cluster;
  std::string node;
  std::string client;
};

int affinity_list(const Context& ctx, const AffinityListArgs& args) {
  AffinityFilter filter{args.cluster, args.node, std::nullopt};
  if (!args.client.empty()) {
    filter.client = affinity::parse_client(args.client);
    if (!filter.client) {
      ctx.err << "pbadmin: --client: '" << args.client
              << "' is not an address or network (e.g. 192.0.2.7, 192.0.2.0/24, "
                 "2001:db8::/64)\n";
      return kExitUsage;
    }
  }
  const auto cfg = load_config(ctx);
  if (!cfg) return kExitUsage;

  AffinityPrinter printer(ctx.out, ctx.json);
  try {
    // Printed as they come: memory stays flat, the first row shows at once.
    const bool found =
        read_affinity(*cfg, filter, affinity::Clock::now(),
                      [&](affinity::AffinityRow row) { printer.add(std::move(row)); });
    if (!found) {
      // Not an error: the balancer has not recorded anything yet (or never ran with this
      // state_dir). The empty list still goes to stdout, so scripts need no special case.
      ctx.err << "pbadmin: no affinity database at " << database_file(*cfg).string() << '\n';
    }
  } catch (const state::SchemaTooNew& e) {
    printer.abandon();
    ctx.err << "pbadmin: " << e.what() << '\n';
    return kExitFailed;
  } catch (const std::exception& e) {
    printer.abandon();
    ctx.err << "pbadmin: cannot read the affinity database " << e.what() << '\n';
    return kExitFailed;
  }
  printer.finish();
  return kExitOk;
}

// The action for a command group given without one of its commands (`pbadmin affinity`).
// CLI11's require_subcommand() is not used for this: it would also report "a subcommand is
// required" for a mistyped command, where "not expected: lsit" is the helpful message.
Action missing_command(const Context& ctx, std::string group, std::string commands) {
  return [&ctx, group = std::move(group), commands = std::move(commands)] {
    ctx.err << "pbadmin: " << (group.empty() ? "" : group + ": ") << "a command is required ("
            << commands << "; see pbadmin " << (group.empty() ? "" : group + " ") << "--help)\n";
    return kExitUsage;
  };
}

// ---- commands that ask the daemon ----

int status_command(const Context& ctx) {
  return request_and_print(
      ctx, http::verb::get, "/v1/status", {},
      [&ctx](const json::object& status) { ctx.out << format_status(status); });
}

struct NodeSetArgs {
  std::string cluster;
  std::string node;
  std::string state;
};

int node_set_command(const Context& ctx, const NodeSetArgs& args) {
  const auto state = config::parse_admin_state(args.state);
  if (!state) {
    ctx.err << "pbadmin: node set: STATE must be one of available, draining, offline (or green, "
               "yellow, red), got '"
            << args.state << "'\n";
    return kExitUsage;
  }
  const std::string target = "/v1/clusters/" + percent_encode(args.cluster) + "/nodes/" +
                             percent_encode(args.node) + "/state";
  const json::object body{{"state", config::to_string(*state)}};
  return request_and_print(ctx, http::verb::put, target, json::serialize(body),
                           [&ctx](const json::object& answer) {
                             ctx.out << "node " << text_of(answer, "cluster") << '/'
                                     << text_of(answer, "node") << ": " << text_of(answer, "state");
                             const std::string previous = text_of(answer, "previous");
                             if (!previous.empty() && previous != text_of(answer, "state")) {
                               ctx.out << " (was " << previous << ')';
                             }
                             ctx.out << '\n';
                           });
}

int reload_command(const Context& ctx) {
  auto outcome = call_daemon(ctx, http::verb::post, "/v1/reload");
  if (const int* code = std::get_if<int>(&outcome)) return *code;
  const DaemonReply& reply = std::get<DaemonReply>(outcome);
  const json::object* answer = reply.body.if_object();
  const json::value* errors = answer == nullptr ? nullptr : answer->if_contains("errors");
  if (reply.status == 422 && errors != nullptr && errors->is_array()) {
    // The file's errors, one per line (FILE:LINE:COL: message), as `protobalance --check`
    // prints them.
    if (ctx.json) ctx.out << json::serialize(*answer) << '\n';
    for (const auto& error : errors->as_array()) {
      ctx.err << (error.is_string() ? std::string(error.as_string()) : json::serialize(error))
              << '\n';
    }
    return kExitFailed;
  }
  if (reply.status < 200 || reply.status > 299 || answer == nullptr) return refused(ctx, reply);
  if (ctx.json) {
    ctx.out << json::serialize(*answer) << '\n';
    return kExitOk;
  }
  const json::value* changes = answer->if_contains("changes");
  const std::size_t count =
      changes != nullptr && changes->is_array() ? changes->as_array().size() : 0;
  if (count == 0) {
    ctx.out << "reloaded: no changes\n";
    return kExitOk;
  }
  ctx.out << "reloaded: " << count << (count == 1 ? " change" : " changes") << '\n';
  for (const auto& change : changes->as_array()) {
    ctx.out << "  "
            << (change.is_string() ? std::string(change.as_string()) : json::serialize(change))
            << '\n';
  }
  return kExitOk;
}

struct RouteArgs {
  std::string listener;
  std::string cluster;
  bool reset = false;
};

int route_command(const Context& ctx, const RouteArgs& args) {
  if (args.reset == !args.cluster.empty()) {
    ctx.err << "pbadmin: route: give either a CLUSTER or --reset (see pbadmin route --help)\n";
    return kExitUsage;
  }
  const std::string target = "/v1/listeners/" + percent_encode(args.listener) + "/route";
  const auto print = [&ctx](const json::object& answer) {
    const std::string cluster = text_of(answer, "cluster");
    const std::string configured = text_of(answer, "configured_cluster");
    ctx.out << "listener " << text_of(answer, "listener") << ": new connections go to cluster "
            << cluster
            << (cluster == configured ? std::string(" (as configured)")
                                      : " (configured: " + configured + ")")
            << '\n';
  };
  if (args.reset) return request_and_print(ctx, http::verb::delete_, target, {}, print);
  return request_and_print(ctx, http::verb::put, target,
                           json::serialize(json::object{{"cluster", args.cluster}}), print);
}

// A CLIENT argument: an address or a network. Prints the usage error and returns false when it is
// neither.
bool valid_client(const Context& ctx, const std::string& where, const std::string& client) {
  if (affinity::parse_client(client)) return true;
  ctx.err << "pbadmin: " << where << ": '" << client
          << "' is not an address or network (e.g. 192.0.2.7, 192.0.2.0/24, 2001:db8::/64)\n";
  return false;
}

struct AffinityChangeArgs {
  std::string client;
  std::string node;
  std::string cluster;
};

int affinity_forget(const Context& ctx, const AffinityChangeArgs& args) {
  if (!valid_client(ctx, "affinity forget", args.client)) return kExitUsage;
  std::string target = "/v1/affinity?client=" + percent_encode(args.client);
  if (!args.cluster.empty()) target += "&cluster=" + percent_encode(args.cluster);
  return request_and_print(
      ctx, http::verb::delete_, target, {}, [&ctx](const json::object& answer) {
        const json::value* forgotten = answer.if_contains("forgotten");
        if (forgotten == nullptr || !forgotten->is_array()) return;
        for (const auto& entry : forgotten->as_array()) {
          if (!entry.is_object()) continue;
          const auto& e = entry.as_object();
          ctx.out << "forgot " << text_of(e, "client") << " in cluster " << text_of(e, "cluster")
                  << " (was on " << text_of(e, "node") << ")\n";
        }
      });
}

int affinity_pin(const Context& ctx, const AffinityChangeArgs& args) {
  if (!valid_client(ctx, "affinity pin", args.client)) return kExitUsage;
  const json::object body{{"cluster", args.cluster}, {"client", args.client}, {"node", args.node}};
  return request_and_print(
      ctx, http::verb::put, "/v1/affinity", json::serialize(body),
      [&ctx](const json::object& answer) {
        const std::string previous = text_of(answer, "previous");
        ctx.out << "pinned " << text_of(answer, "client") << " to " << text_of(answer, "cluster")
                << '/' << text_of(answer, "node")
                << (previous.empty() ? std::string(" (new entry)") : " (was " + previous + ")")
                << '\n';
      });
}

// ---- the block list ----

struct BlockArgs {
  std::string network;
  std::string duration;  // --for; empty = until unblocked
  std::string listener;  // empty = every listener
};

// A NETWORK argument: an address, or ADDR/LEN without host bits, read by the balancer's own
// parser (config::parse_network), so that what passes here the balancer takes. Prints the usage
// error and returns false otherwise.
bool valid_network(const Context& ctx, const std::string& where, const std::string& text) {
  const auto parsed = config::parse_network(text);
  if (!parsed.network) ctx.err << "pbadmin: " << where << ": " << parsed.error << '\n';
  return parsed.network.has_value();
}

// --listener: a listener of the configuration. Prints the usage error and returns false
// otherwise (also when the configuration cannot be loaded).
bool valid_listener(const Context& ctx, const std::string& where, const std::string& listener) {
  const auto cfg = load_config(ctx);
  if (!cfg) return false;
  std::string names;
  for (const auto& l : cfg->listeners) {
    if (l.name == listener) return true;
    names += (names.empty() ? "" : ", ") + l.name;
  }
  ctx.err << "pbadmin: " << where << ": no listener named '" << listener << "' in "
          << ctx.config_file << " (listeners: " << names << ")\n";
  return false;
}

// "192.0.2.0/24 on every listener" from a block of an answer, then " until
// 2026-12-07T01:00:00Z" (or " until unblocked") when `until` is set.
std::string block_line(const json::object& block, bool until) {
  const std::string listener = text_of(block, "listener");
  const std::string expires = text_of(block, "expires");
  std::string line = text_of(block, "network") + " on " +
                     (listener.empty() ? std::string("every listener") : "listener " + listener);
  if (until) {
    line += " until ";
    line += expires.empty() ? std::string("unblocked") : expires;
  }
  return line;
}

int block_command(const Context& ctx, const BlockArgs& args) {
  if (!valid_network(ctx, "block", args.network)) return kExitUsage;
  json::object body{{"network", args.network}};
  if (!args.duration.empty()) {
    const auto length = config::parse_duration(args.duration);
    if (!length || length->count() <= 0 || *length > std::chrono::hours(24 * 3650)) {
      ctx.err << "pbadmin: block: --for '" << args.duration
              << "' is not a duration between 1s and 3650d (e.g. 90s, 10m, 12h, 30d); leave it "
                 "out for a block without an end\n";
      return kExitUsage;
    }
    body["for"] = args.duration;
  }
  if (!args.listener.empty()) {
    if (!valid_listener(ctx, "block", args.listener)) return kExitUsage;
    body["listener"] = args.listener;
  }
  return request_and_print(ctx, http::verb::put, "/v1/blocks", json::serialize(body),
                           [&ctx](const json::object& answer) {
                             const json::value* block = answer.if_contains("block");
                             if (block == nullptr || !block->is_object()) return;
                             ctx.out << "blocked " << block_line(block->as_object(), true) << '\n';
                           });
}

int unblock_command(const Context& ctx, const BlockArgs& args) {
  if (!valid_network(ctx, "unblock", args.network)) return kExitUsage;
  std::string target = "/v1/blocks?network=" + percent_encode(args.network);
  if (!args.listener.empty()) {
    if (!valid_listener(ctx, "unblock", args.listener)) return kExitUsage;
    target += "&listener=" + percent_encode(args.listener);
  }
  const auto print = [&ctx](const json::object& answer) {
    const json::value* removed = answer.if_contains("unblocked");
    if (removed == nullptr || !removed->is_array()) return;
    for (const auto& block : removed->as_array()) {
      if (!block.is_object()) continue;
      ctx.out << "unblocked " << block_line(block.as_object(), false) << '\n';
    }
  };
  return request_and_print(ctx, http::verb::delete_, target, {}, print);
}

// Reads the database, so it works while the balancer is down.
int blocks_command(const Context& ctx) {
  const auto cfg = load_config(ctx);
  if (!cfg) return kExitUsage;
  std::vector<state::BlockRow> rows;
  try {
    auto found = read_blocks(*cfg, std::chrono::system_clock::now());
    if (found) {
      rows = std::move(*found);
    } else {
      // Not an error, as for `affinity list`: the empty list still goes to stdout.
      ctx.err << "pbadmin: no block list in " << database_file(*cfg).string() << " yet\n";
    }
  } catch (const state::SchemaTooNew& e) {
    ctx.err << "pbadmin: " << e.what() << '\n';
    return kExitFailed;
  } catch (const std::exception& e) {
    ctx.err << "pbadmin: cannot read the block list " << e.what() << '\n';
    return kExitFailed;
  }
  ctx.out << (ctx.json ? format_blocks_json(rows) : format_blocks_table(rows));
  return kExitOk;
}

// `block` and `unblock` ask the daemon (its block list is what refuses connections); `blocks`
// reads the database directly.
void add_block_commands(CLI::App& app, const Context& ctx, Action& action) {
  auto args = std::make_shared<BlockArgs>();
  CLI::App* block = app.add_subcommand(
      "block",
      "Refuse new connections from an address or network (IPv4-mapped IPv6 clients match IPv4 "
      "blocks) and close its running ones, on every listener or one. Kept across restarts.");
  block->add_option("NETWORK", args->network, "Address or network (192.0.2.7, 2001:db8::/32)")
      ->required();
  block->add_option("--for", args->duration, "Lift the block after this long (90s, 10m, 12h, 30d)")
      ->type_name("DURATION");
  block->add_option("--listener", args->listener, "Only on this listener (default: every one)")
      ->type_name("NAME");
  block->callback(
      [&ctx, &action, args] { action = [&ctx, args] { return block_command(ctx, *args); }; });

  CLI::App* unblock = app.add_subcommand(
      "unblock", "Lift the blocks of an address or network (as it was given to block)");
  unblock->add_option("NETWORK", args->network, "Address or network")->required();
  unblock->add_option("--listener", args->listener, "Only its block on this listener")
      ->type_name("NAME");
  unblock->callback(
      [&ctx, &action, args] { action = [&ctx, args] { return unblock_command(ctx, *args); }; });

  CLI::App* blocks = app.add_subcommand(
      "blocks",
      "List the blocks in force. Reads the database directly (read-only), so it works while the "
      "balancer is down.");
  blocks->callback([&ctx, &action] { action = [&ctx] { return blocks_command(ctx); }; });
}

void add_status_commands(CLI::App& app, const Context& ctx, Action& action) {
  CLI::App* status = app.add_subcommand(
      "status",
      "Show listeners (address, cluster, connections), clusters and nodes (state, up or down "
      "since when, connections, failures, settings)");
  status->callback([&ctx, &action] { action = [&ctx] { return status_command(ctx); }; });
}

void add_node_commands(CLI::App& app, const Context& ctx, Action& action) {
  CLI::App* node = app.add_subcommand("node", "Node states");
  auto args = std::make_shared<NodeSetArgs>();
  CLI::App* set = node->add_subcommand(
      "set",
      "Set a node's state: available (green) takes connections; draining (yellow) takes no new "
      "ones while running ones go on; offline (red) closes its connections now. Kept across "
      "restarts.");
  set->add_option("CLUSTER", args->cluster, "Cluster of the node")->required();
  set->add_option("NODE", args->node, "Node name")->required();
  set->add_option("STATE", args->state, "available|draining|offline (or green|yellow|red)")
      ->required();
  set->callback(
      [&ctx, &action, args] { action = [&ctx, args] { return node_set_command(ctx, *args); }; });
  node->callback([&ctx, &action] {
    if (!action) action = missing_command(ctx, "node", "set");
  });
}

void add_reload_commands(CLI::App& app, const Context& ctx, Action& action) {
  CLI::App* reload = app.add_subcommand(
      "reload",
      "Re-read the balancer's configuration file and apply it without dropping a connection; a "
      "file with errors changes nothing (the errors are printed with their positions)");
  reload->callback([&ctx, &action] { action = [&ctx] { return reload_command(ctx); }; });
}

void add_route_commands(CLI::App& app, const Context& ctx, Action& action) {
  auto args = std::make_shared<RouteArgs>();
  CLI::App* route = app.add_subcommand(
      "route",
      "Send a listener's new connections to another cluster (running connections stay where "
      "they are), or back with --reset. Kept across restarts.");
  route->add_option("LISTENER", args->listener, "Listener name")->required();
  route->add_option("CLUSTER", args->cluster, "Cluster to send new connections to");
  route->add_flag("--reset", args->reset, "Back to the cluster in the configuration file");
  route->callback(
      [&ctx, &action, args] { action = [&ctx, args] { return route_command(ctx, *args); }; });
}

// `affinity ...`: `list` reads the database directly; `forget` and `pin` ask the daemon over
// the admin socket (the map in its memory is what answers connections).
void add_affinity_commands(CLI::App& app, const Context& ctx, Action& action) {
  CLI::App* affinity = app.add_subcommand("affinity", "Client affinity entries");

  auto args = std::make_shared<AffinityListArgs>();
  CLI::App* list = affinity->add_subcommand(
      "list",
      "List which node each client goes to. Reads the database directly (read-only), so it "
      "works while the balancer is down; expired entries are not shown.");
  list->add_option("--cluster", args->cluster, "Only entries of this cluster")
      ->type_name("CLUSTER");
  list->add_option("--node", args->node, "Only entries of this node")->type_name("NODE");
  list->add_option("--client", args->client,
                   "Only entries for this address or network (an address also matches the "
                   "network entry that holds it)")
      ->type_name("ADDR");
  list->callback(
      [&ctx, &action, args] { action = [&ctx, args] { return affinity_list(ctx, *args); }; });

  auto change = std::make_shared<AffinityChangeArgs>();
  CLI::App* forget = affinity->add_subcommand(
      "forget",
      "Forget a client's node (every entry within a network given as ADDR/PREFIX), so that the "
      "algorithm chooses again at its next connection");
  forget->add_option("CLIENT", change->client, "Client address or network")->required();
  forget
      ->add_option("--cluster", change->cluster,
                   "Only in this cluster (default: every cluster with affinity)")
      ->type_name("CLUSTER");
  forget->callback([&ctx, &action, change] {
    action = [&ctx, change] { return affinity_forget(ctx, *change); };
  });

  CLI::App* pin = affinity->add_subcommand(
      "pin", "Send a client to a node from its next connection on (creates or changes its entry)");
  pin->add_option("CLIENT", change->client, "Client address (or network of the cluster's prefix)")
      ->required();
  pin->add_option("NODE", change->node, "Node of the cluster")->required();
  pin->add_option("--cluster", change->cluster, "Cluster of the node")
      ->type_name("CLUSTER")
      ->required();
  pin->callback(
      [&ctx, &action, change] { action = [&ctx, change] { return affinity_pin(ctx, *change); }; });

  // Runs after the callback of a chosen subcommand, so it sees whether one was given.
  affinity->callback([&ctx, &action] {
    if (!action) action = missing_command(ctx, "affinity", "list, forget, pin");
  });
}

void add_top_commands(CLI::App& app, const Context& ctx, Action& action,
                      TopScreenFactory make_screen) {
  auto args = std::make_shared<TopArgs>();
  CLI::App* top = app.add_subcommand(
      "top",
      "Live view of listeners and nodes: state (coloured), up/down, active connections, "
      "connections/s and bytes/s between refreshes, failures, affinity entries. q quits. Plain "
      "text, one table set per refresh, when standard output is not a terminal");
  top->add_option("-n,--count", args->count, "Show COUNT refreshes, then exit (0 = until q)")
      ->type_name("COUNT");
  top->add_option("--interval", args->interval,
                  "Time between refreshes: a duration (500ms, 2s) or seconds (0.5)")
      ->type_name("DURATION")
      ->capture_default_str();
  top->callback([&ctx, &action, args, make_screen] {
    action = [&ctx, args, make_screen] { return top_command(ctx, *args, make_screen); };
  });
}

// The failure line CLI11 prints for a usage error: one line, our prefix.
std::string usage_failure(const CLI::App*, const CLI::Error& e) {
  return std::string("pbadmin: ") + e.what() + " (see pbadmin --help)\n";
}

}  // namespace

int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  return run_pbadmin(argc, argv, out, err, nullptr);
}

int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
                TopScreenFactory top_screen) {
  Context ctx{kDefaultConfigFile, false, out, err};
  Action action;

  CLI::App app("pbadmin: inspect and control a Proto Balance load balancer", "pbadmin");
  // Global options are accepted after the command too (`pbadmin affinity list --json`): the
  // subcommands pass what they do not know to the top level. Set before adding subcommands,
  // which inherit it.
  app.fallthrough();
  app.failure_message(usage_failure);
  app.set_version_flag("--version", std::string("pbadmin (Proto Balance) ") + pb::kVersion);
  app.add_option("--config", ctx.config_file,
                 "Configuration file of the balancer (gives the state_dir with the database "
                 "and the admin socket)")
      ->type_name("FILE")
      ->capture_default_str();
  app.add_flag("--json", ctx.json, "Print machine-readable JSON");

  // One function per command group.
  add_status_commands(app, ctx, action);
  add_node_commands(app, ctx, action);
  add_reload_commands(app, ctx, action);
  add_route_commands(app, ctx, action);
  add_affinity_commands(app, ctx, action);
  add_top_commands(app, ctx, action, top_screen);
  add_block_commands(app, ctx, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; they print to `out`.
    return app.exit(e, out, err) == 0 ? kExitOk : kExitUsage;
  }
  if (!action) {
    action = missing_command(ctx, "",
                             "status, node, reload, route, affinity, top, block, unblock, blocks");
  }
  return action();
}

int run_pbadmin(int argc, char** argv) {
  return run_pbadmin(argc, argv, std::cout, std::cerr);
}

}  // namespace pb::pbadmin
