#include "protobalance/control/admin_cli.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <ctime>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <tuple>

#include "protobalance/config/config.hpp"
#include "protobalance/version.hpp"

namespace pb::control {
namespace {

// What every command may use: the global options and the output streams.
struct Context {
  std::string config_file = kDefaultConfigFile;
  bool json = false;
  std::ostream& out;
  std::ostream& err;
};

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

  const std::filesystem::path db_file = cfg->service.state_dir / affinity::Store::kFileName;
  std::vector<affinity::AffinityRow> rows;
  try {
    auto stored = affinity::read_affinity_file(db_file, args.cluster, args.node);
    if (stored) {
      rows = std::move(*stored);
    } else {
      // Not an error: the balancer has not recorded anything yet (or never ran with this
      // state_dir). The empty list still goes to stdout, so scripts need no special case.
      ctx.err << "pbadmin: no affinity database at " << db_file.string() << '\n';
    }
  } catch (const std::exception& e) {
    ctx.err << "pbadmin: cannot read the affinity database " << e.what() << '\n';
    return kExitFailed;
  }
  rows = select_affinity(std::move(rows), filter, affinity::make_ttl_table(*cfg),
                         affinity::Clock::now());
  ctx.out << (ctx.json ? format_affinity_json(rows) : format_affinity_table(rows));
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

// `affinity ...`. Later: `affinity forget CLIENT [--cluster C]` and `affinity pin`, which ask
// the daemon over the admin socket (the map in its memory is what answers connections).
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
  // Runs after the callback of a chosen subcommand, so it sees whether one was given.
  affinity->callback([&ctx, &action] {
    if (!action) action = missing_command(ctx, "affinity", "list");
  });
}

// The failure line CLI11 prints for a usage error: one line, our prefix.
std::string usage_failure(const CLI::App*, const CLI::Error& e) {
  return std::string("pbadmin: ") + e.what() + " (see pbadmin --help)\n";
}

}  // namespace

int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
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

  // One function per command group. Still to come with the control-plane issue, as siblings:
  // status, node set CLUSTER NODE STATE, reload, route LISTENER CLUSTER.
  add_affinity_commands(app, ctx, action);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; they print to `out`.
    return app.exit(e, out, err) == 0 ? kExitOk : kExitUsage;
  }
  if (!action) action = missing_command(ctx, "", "affinity");
  return action();
}

int run_pbadmin(int argc, char** argv) {
  return run_pbadmin(argc, argv, std::cout, std::cerr);
}

std::vector<affinity::AffinityRow> select_affinity(std::vector<affinity::AffinityRow> rows,
                                                   const AffinityFilter& filter,
                                                   const affinity::TtlTable& ttls,
                                                   affinity::Clock::time_point now) {
  struct Keyed {
    std::optional<affinity::ClientKey> key;
    affinity::AffinityRow row;
  };
  std::vector<Keyed> kept;
  kept.reserve(rows.size());
  for (auto& row : rows) {
    if (!filter.cluster.empty() && row.cluster != filter.cluster) continue;
    if (!filter.node.empty() && row.node != filter.node) continue;
    if (row.last_seen < affinity::expiry_cutoff(now, ttls.ttl_for(row.cluster))) continue;
    auto key = affinity::parse_client(row.client);
    if (filter.client && !(key && key->overlaps(*filter.client))) continue;
    kept.push_back(Keyed{key, std::move(row)});
  }
  // Numeric client order reads naturally (10.0.0.9 before 10.0.0.10); unparsable text last.
  std::sort(kept.begin(), kept.end(), [](const Keyed& a, const Keyed& b) {
    return std::forward_as_tuple(a.row.cluster, !a.key, a.key, a.row.client) <
           std::forward_as_tuple(b.row.cluster, !b.key, b.key, b.row.client);
  });
  std::vector<affinity::AffinityRow> result;
  result.reserve(kept.size());
  for (auto& k : kept) result.push_back(std::move(k.row));
  return result;
}

std::string format_utc(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(text, n);
}

std::string format_affinity_table(const std::vector<affinity::AffinityRow>& rows) {
  const std::vector<std::string> header{"CLIENT",     "CLUSTER",   "NODE",
                                        "FIRST_SEEN", "LAST_SEEN", "CONNECTIONS"};
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  for (const auto& r : rows) {
    cells.push_back({r.client, r.cluster, r.node, format_utc(r.first_seen), format_utc(r.last_seen),
                     std::to_string(r.connections)});
  }
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& line : cells) width[c] = std::max(width[c], line[c].size());
  }
  std::string text;
  const auto append = [&](const std::vector<std::string>& line, bool header_line) {
    for (std::size_t c = 0; c < line.size(); ++c) {
      const std::string pad(width[c] - line[c].size(), ' ');
      const bool last = c + 1 == line.size();
      // Counts are right-aligned under their header, as numbers are read.
      if (last && !header_line) {
        text += pad + line[c];
      } else {
        text += line[c];
        if (!last) text += pad + "  ";
      }
    }
    text += '\n';
  };
  append(header, true);
  for (const auto& line : cells) append(line, false);
  return text;
}

std::string format_affinity_json(const std::vector<affinity::AffinityRow>& rows) {
  boost::json::array array;
  array.reserve(rows.size());
  for (const auto& r : rows) {
    array.push_back(boost::json::object{{"client", r.client},
                                        {"cluster", r.cluster},
                                        {"node", r.node},
                                        {"first_seen", format_utc(r.first_seen)},
                                        {"last_seen", format_utc(r.last_seen)},
                                        {"connections", r.connections}});
  }
  return boost::json::serialize(array) + "\n";
}

}  // namespace pb::control
