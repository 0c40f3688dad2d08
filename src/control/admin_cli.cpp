#include "protobalance/control/admin_cli.hpp"

#include <poll.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <exception>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <variant>

#include "protobalance/config/config.hpp"
#include "protobalance/config/duration.hpp"
#include "protobalance/version.hpp"

namespace pb::control {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;

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

// Prints affinity rows as they arrive, in the format of format_affinity_table/_json. The table's
// columns are as wide as the widest cell of the first kAlignRows rows: a list that fits is
// exactly format_affinity_table()'s; a longer one streams the rest with those widths (a wider
// cell further down shifts its own line only), so memory stays flat and the first row comes at
// once.
class AffinityPrinter {
 public:
  static constexpr std::size_t kAlignRows = 1000;

  AffinityPrinter(std::ostream& out, bool json) : out_(out), json_(json) {}

  void add(affinity::AffinityRow row) {
    if (json_) {
      // One object: format_affinity_json's "[{...}]\n" without the brackets and the newline.
      const std::string one = format_affinity_json({row});
      out_ << (any_ ? "," : "[") << one.substr(1, one.size() - 3);
      any_ = true;
      return;
    }
    if (!streaming_) {
      buffered_.push_back(std::move(row));
      if (buffered_.size() >= kAlignRows) start_streaming();
      return;
    }
    out_ << table_line(row);
  }

  // After a read error: closes what was already printed (a JSON array), prints nothing else.
  void abandon() {
    if (json_ && any_) out_ << "]\n";
    finished_ = true;
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    if (json_) {
      out_ << (any_ ? "]\n" : "[]\n");
      return;
    }
    if (!streaming_) {
      out_ << format_affinity_table(buffered_);
      return;
    }
    out_.flush();
  }

 private:
  void start_streaming() {
    streaming_ = true;
    const std::string table = format_affinity_table(buffered_);
    // Column widths from the header line: where each next header starts.
    const std::string header = table.substr(0, table.find('\n'));
    for (const char* name : {"CLUSTER", "NODE", "FIRST_SEEN", "LAST_SEEN", "CONNECTIONS"}) {
      starts_.push_back(header.find(name));
    }
    starts_.push_back(header.size());
    out_ << table;
    out_.flush();
    buffered_.clear();
    buffered_.shrink_to_fit();
  }

  std::string table_line(const affinity::AffinityRow& r) const {
    const std::string cells[] = {r.client, r.cluster, r.node, format_utc(r.first_seen),
                                 format_utc(r.last_seen)};
    std::string line;
    for (std::size_t c = 0; c < 5; ++c) {
      line += cells[c];
      const std::size_t want = starts_[c];
      line += std::string(want > line.size() ? want - line.size() : 2, ' ');
    }
    const std::string count = std::to_string(r.connections);
    const std::size_t want = starts_[5];
    if (want > line.size() + count.size()) line += std::string(want - line.size() - count.size(), ' ');
    return line + count + '\n';
  }

  std::ostream& out_;
  bool json_;
  bool any_ = false;
  bool streaming_ = false;
  bool finished_ = false;
  std::vector<affinity::AffinityRow> buffered_;
  std::vector<std::size_t> starts_;  // column start offsets, then the line's width
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
  AffinityPrinter printer(ctx.out, ctx.json);
  const auto ttls = affinity::make_ttl_table(*cfg);
  const auto now = affinity::Clock::now();
  try {
    // Streams: rows come in (cluster, client) order from the index, and are printed as they
    // come; a --client filter is a point query per shorter prefix plus one range.
    const bool found = affinity::stream_affinity_file(
        db_file, args.cluster, args.node, filter.client, [&](const affinity::AffinityRowView& r) {
          if (r.last_seen < affinity::expiry_cutoff(now, ttls.ttl_for(r.cluster))) return;
          printer.add(affinity::AffinityRow{std::string(r.cluster), r.key.to_string(),
                                            std::string(r.node), r.first_seen, r.last_seen,
                                            r.connections});
        });
    if (!found) {
      // Not an error: the balancer has not recorded anything yet (or never ran with this
      // state_dir). The empty list still goes to stdout, so scripts need no special case.
      ctx.err << "pbadmin: no affinity database at " << db_file.string() << '\n';
    }
  } catch (const affinity::SchemaTooNew& e) {
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

// ---- talking to the daemon: HTTP/1.1 + JSON over its admin socket ----

using LocalStream = beast::basic_stream<asio::local::stream_protocol, asio::any_io_executor,
                                        beast::unlimited_rate_policy>;

constexpr std::chrono::seconds kConnectTimeout{5};
// A reload binds listeners and reads the file; everything else answers at once.
constexpr std::chrono::seconds kAnswerTimeout{30};
constexpr std::size_t kMaxAnswer = 64 * 1024 * 1024;

// An answer of the daemon (any status).
struct DaemonReply {
  unsigned status = 0;
  json::value body;  // null when the body is not JSON
};

// What happened to one request/answer exchange.
struct Exchange {
  boost::system::error_code ec;
  bool connected = false;
  http::response<http::string_body> response;
};

asio::awaitable<void> exchange(LocalStream& stream, const std::string& socket_path,
                               http::request<http::string_body>& request, Exchange& result) {
  constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
  stream.expires_after(kConnectTimeout);
  auto [connect_ec] = co_await stream.async_connect(
      asio::local::stream_protocol::endpoint(socket_path), use_tuple);
  if (connect_ec) {
    result.ec = connect_ec;
    co_return;
  }
  result.connected = true;
  stream.expires_after(kAnswerTimeout);
  auto [write_ec, written] = co_await http::async_write(stream, request, use_tuple);
  if (write_ec) {
    result.ec = write_ec;
    co_return;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxAnswer);
  auto [read_ec, read] = co_await http::async_read(stream, buffer, parser, use_tuple);
  result.ec = read_ec;
  if (!read_ec) result.response = parser.release();
}

// "a b/c" -> "a%20b%2Fc": everything but RFC 3986's unreserved characters is escaped.
std::string percent_encode(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(c);
    } else {
      char escaped[4];
      std::snprintf(escaped, sizeof escaped, "%%%02X", static_cast<unsigned char>(c));
      out += escaped;
    }
  }
  return out;
}

// Sends one request to the daemon whose admin socket --config names. Returns its answer, or the
// exit code after printing one line on stderr: kExitUsage when the socket cannot be told from the
// file, kExitUnreachable when the socket is missing, refuses, or does not answer in time.
std::variant<DaemonReply, int> call_daemon(const Context& ctx, http::verb verb,
                                           const std::string& target, std::string body = {}) {
  // Only the socket's keys must be right: the balancer is reachable (and `reload` reports the
  // errors as it found them) also while the rest of the file is being edited.
  std::vector<config::Diagnostic> errors;
  const auto socket = config::find_admin_socket(ctx.config_file, errors);
  if (!socket) {
    for (const config::Diagnostic& d : errors) ctx.err << d.to_string() << '\n';
    if (errors.empty()) ctx.err << ctx.config_file << ": cannot load the configuration\n";
    return kExitUsage;
  }
  const std::string socket_path = socket->string();

  http::request<http::string_body> request{verb, target, 11};
  request.set(http::field::host, "localhost");
  request.set(http::field::user_agent, std::string("pbadmin/") + pb::kVersion);
  request.set(http::field::accept, "application/json");
  if (!body.empty()) request.set(http::field::content_type, "application/json");
  request.body() = std::move(body);
  request.keep_alive(false);
  request.prepare_payload();

  asio::io_context context;
  LocalStream stream(context);
  Exchange result;
  std::exception_ptr failure;
  asio::co_spawn(context, exchange(stream, socket_path, request, result),
                 [&failure](std::exception_ptr e) { failure = e; });
  context.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception& e) {
      ctx.err << "pbadmin: cannot talk to the balancer at " << socket_path << ": " << e.what()
              << '\n';
    }
    return kExitUnreachable;
  }
  if (result.ec) {
    const auto& ec = result.ec;
    if (!result.connected && ec == boost::system::errc::no_such_file_or_directory) {
      ctx.err << "pbadmin: the balancer is not running: no admin socket at " << socket_path
              << '\n';
    } else if (!result.connected && ec == asio::error::connection_refused) {
      ctx.err << "pbadmin: the balancer is not running: nothing answers on " << socket_path
              << " (a socket left behind)\n";
    } else if (ec == beast::error::timeout) {
      ctx.err << "pbadmin: the balancer did not answer on " << socket_path << " within "
              << (result.connected ? kAnswerTimeout : kConnectTimeout).count() << " s\n";
    } else {
      ctx.err << "pbadmin: cannot " << (result.connected ? "talk to" : "reach")
              << " the balancer at " << socket_path << ": " << ec.message() << '\n';
    }
    return kExitUnreachable;
  }
  DaemonReply reply;
  reply.status = result.response.result_int();
  boost::system::error_code parse_ec;
  reply.body = json::parse(result.response.body(), parse_ec);
  if (parse_ec) reply.body = nullptr;
  return reply;
}

// The daemon's message in an error answer, or a generic one naming the status.
std::string error_message(const DaemonReply& reply) {
  if (const auto* object = reply.body.if_object()) {
    if (const auto* error = object->if_contains("error"); error != nullptr && error->is_string()) {
      return std::string(error->as_string());
    }
  }
  return "the balancer answered with HTTP status " + std::to_string(reply.status);
}

// Prints a refusal (one line on stderr; the answer's JSON on stdout with --json) and returns
// kExitFailed.
int refused(const Context& ctx, const DaemonReply& reply) {
  if (ctx.json && !reply.body.is_null()) ctx.out << json::serialize(reply.body) << '\n';
  ctx.err << "pbadmin: " << error_message(reply) << '\n';
  return kExitFailed;
}

// Runs one request whose 2xx answer is a JSON object: prints it (--json) or hands it to
// `print` for people. Other answers are refusals.
int request_and_print(const Context& ctx, http::verb verb, const std::string& target,
                      std::string body,
                      const std::function<void(const json::object&)>& print) {
  auto outcome = call_daemon(ctx, verb, target, std::move(body));
  if (const int* code = std::get_if<int>(&outcome)) return *code;
  const DaemonReply& reply = std::get<DaemonReply>(outcome);
  if (reply.status < 200 || reply.status > 299) return refused(ctx, reply);
  const json::object* object = reply.body.if_object();
  if (object == nullptr) {
    ctx.err << "pbadmin: the balancer's answer is not a JSON object\n";
    return kExitFailed;
  }
  if (ctx.json) {
    ctx.out << json::serialize(*object) << '\n';
  } else {
    print(*object);
  }
  return kExitOk;
}

std::string text_of(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || value->is_null()) return {};
  if (const auto* s = value->if_string()) return std::string(*s);
  return json::serialize(*value);
}

// ---- commands that ask the daemon ----

int status_command(const Context& ctx) {
  return request_and_print(ctx, http::verb::get, "/v1/status", {},
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
  const std::size_t count = changes != nullptr && changes->is_array() ? changes->as_array().size() : 0;
  if (count == 0) {
    ctx.out << "reloaded: no changes\n";
    return kExitOk;
  }
  ctx.out << "reloaded: " << count << (count == 1 ? " change" : " changes") << '\n';
  for (const auto& change : changes->as_array()) {
    ctx.out << "  " << (change.is_string() ? std::string(change.as_string()) : json::serialize(change))
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
  return request_and_print(ctx, http::verb::delete_, target, {}, [&ctx](const json::object& answer) {
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
  return request_and_print(ctx, http::verb::put, "/v1/affinity", json::serialize(body),
                           [&ctx](const json::object& answer) {
                             const std::string previous = text_of(answer, "previous");
                             ctx.out << "pinned " << text_of(answer, "client") << " to "
                                     << text_of(answer, "cluster") << '/' << text_of(answer, "node")
                                     << (previous.empty() ? std::string(" (new entry)")
                                                          : " (was " + previous + ")")
                                     << '\n';
                           });
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
  set->callback([&ctx, &action, args] {
    action = [&ctx, args] { return node_set_command(ctx, *args); };
  });
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
  route->callback([&ctx, &action, args] {
    action = [&ctx, args] { return route_command(ctx, *args); };
  });
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
  forget->add_option("--cluster", change->cluster,
                     "Only in this cluster (default: every cluster with affinity)")
      ->type_name("CLUSTER");
  forget->callback(
      [&ctx, &action, change] { action = [&ctx, change] { return affinity_forget(ctx, *change); }; });

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

// ---- top: a live view, refreshed every --interval ----

struct TopArgs {
  unsigned count = 0;  // 0 = until q or a signal
  std::string interval = "1s";
};

// --interval: a duration ("500ms", "2s") or a number of seconds ("0.5", "2"), 100 ms at least.
std::optional<std::chrono::milliseconds> parse_top_interval(const std::string& text) {
  if (const auto d = config::parse_duration(text)) {
    if (*d >= std::chrono::milliseconds(100)) return *d;
    return std::nullopt;
  }
  double seconds = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(seconds) ||
      seconds < 0.1 || seconds > 86400) {
    return std::nullopt;
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000));
}

// Fetches one status document. On failure returns the exit code; the reason went to ctx.err.
std::variant<TopSample, int> fetch_top_sample(const Context& ctx) {
  auto outcome = call_daemon(ctx, http::verb::get, "/v1/status");
  if (const int* code = std::get_if<int>(&outcome)) return *code;
  const DaemonReply& reply = std::get<DaemonReply>(outcome);
  if (reply.status < 200 || reply.status > 299) return refused(ctx, reply);
  const json::object* object = reply.body.if_object();
  if (object == nullptr) {
    ctx.err << "pbadmin: the balancer's answer is not a JSON object\n";
    return kExitFailed;
  }
  return TopSample{*object, std::chrono::steady_clock::now()};
}

// Plain mode's wait: `timeout`, or until a line with "q" arrives on a terminal's standard input.
// Returns true when asked to quit. Without a terminal on stdin it only waits.
bool wait_plain(std::chrono::milliseconds timeout, bool& read_keys) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (!read_keys) {
      std::this_thread::sleep_for(left);
      return false;
    }
    pollfd pfd{STDIN_FILENO, POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready <= 0) continue;  // timeout (checked above) or EINTR
    char buffer[64];
    const ssize_t n = ::read(STDIN_FILENO, buffer, sizeof buffer);
    if (n <= 0) {
      read_keys = false;  // end of input: nothing more to read
      continue;
    }
    if (std::string_view(buffer, static_cast<std::size_t>(n)).find_first_of("qQ") !=
        std::string_view::npos) {
      return true;
    }
  }
}

int top_command(const Context& ctx, const TopArgs& args, TopScreenFactory make_screen) {
  if (ctx.json) {
    ctx.err << "pbadmin: top: no --json output (use pbadmin status --json)\n";
    return kExitUsage;
  }
  const auto interval = parse_top_interval(args.interval);
  if (!interval) {
    ctx.err << "pbadmin: top: --interval must be a duration of 100ms or more (e.g. 500ms, 2s, "
               "or seconds: 0.5), got '"
            << args.interval << "'\n";
    return kExitUsage;
  }
  // The first sample decides whether there is anything to show: no balancer, no screen.
  auto first = fetch_top_sample(ctx);
  if (const int* code = std::get_if<int>(&first)) return *code;
  TopSample previous = std::move(std::get<TopSample>(first));
  TopFrame frame = make_top_frame(previous, nullptr);

  std::unique_ptr<TopScreen> screen;
  if (make_screen != nullptr && ::isatty(STDOUT_FILENO) == 1) {
    try {
      screen = make_screen(*interval);
    } catch (const std::exception& e) {
      ctx.err << "pbadmin: top: " << e.what() << "; printing plain text\n";
    }
  }
  bool read_keys = ::isatty(STDIN_FILENO) == 1;
  // While the screen is up, messages go into its message line rather than over it.
  std::ostringstream screen_errors;
  const Context quiet{ctx.config_file, ctx.json, ctx.out, screen_errors};
  std::string message;
  for (unsigned shown = 1;; ++shown) {
    if (screen) {
      screen->draw(frame, message);
    } else {
      if (shown > 1) ctx.out << '\n';
      ctx.out << format_top_plain(frame) << std::flush;
    }
    if (args.count != 0 && shown >= args.count) return kExitOk;
    if (screen ? screen->wait_for_quit(*interval) : wait_plain(*interval, read_keys)) {
      return kExitOk;
    }
    auto next = fetch_top_sample(screen ? quiet : ctx);
    if (auto* sample = std::get_if<TopSample>(&next)) {
      frame = make_top_frame(*sample, &previous);
      previous = std::move(*sample);
      message.clear();
    } else {
      // The last frame stays, with the reason (the balancer restarting, say); keep trying.
      message = screen_errors.str();
      screen_errors.str({});
      while (!message.empty() && message.back() == '\n') message.pop_back();
    }
  }
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version are "errors" with exit code 0; they print to `out`.
    return app.exit(e, out, err) == 0 ? kExitOk : kExitUsage;
  }
  if (!action) action = missing_command(ctx, "", "status, node, reload, route, affinity, top");
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

namespace pb::control {
namespace {

// A column of an aligned text table: numbers are right-aligned (header included) so that their
// digits line up.
struct Column {
  std::string header;
  bool right = false;
};

std::string format_columns(const std::vector<Column>& columns,
                           const std::vector<std::vector<std::string>>& rows, std::string_view indent) {
  std::vector<std::size_t> width(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    width[c] = columns[c].header.size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::string text;
  const auto append = [&](const std::vector<std::string>& cells) {
    std::string line(indent);
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string pad(width[c] - cells[c].size(), ' ');
      if (c > 0) line += "  ";
      line += columns[c].right ? pad + cells[c] : cells[c] + pad;
    }
    // Left-aligned last columns leave padding behind.
    line.erase(line.find_last_not_of(' ') + 1);
    text += line + '\n';
  };
  std::vector<std::string> header;
  for (const auto& column : columns) header.push_back(column.header);
  append(header);
  for (const auto& row : rows) append(row);
  return text;
}

const json::value* member(const json::object& object, std::string_view key) {
  return object.if_contains(key);
}

std::string string_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  if (value == nullptr || value->is_null()) return "-";
  if (const auto* s = value->if_string()) return std::string(*s);
  return json::serialize(*value);
}

bool bool_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  return value != nullptr && value->is_bool() && value->as_bool();
}

// Integers as integers, other numbers in the shortest form ("1.5"), anything else as JSON.
std::string number_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  if (value == nullptr || value->is_null()) return "-";
  if (value->is_int64()) return std::to_string(value->as_int64());
  if (value->is_uint64()) return std::to_string(value->as_uint64());
  if (value->is_double()) {
    const double d = value->as_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
      return std::to_string(static_cast<long long>(d));
    }
    char text[32];
    std::snprintf(text, sizeof text, "%g", d);
    return text;
  }
  return json::serialize(*value);
}

const json::array* array_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  return value == nullptr ? nullptr : value->if_array();
}

// Issue 12 columns of a node: STATE shows the agent's state next to the operator's when they
// differ, UP says why a node is out (failed checks, agent down), LOAD shows the factor in force
// when the agent or slow start changes it.
void describe_health(const json::object& n, std::string& state, std::string& up,
                     std::string& load) {
  const json::value* agent = member(n, "agent");
  if (agent != nullptr && agent->is_object()) {
    const auto& a = agent->as_object();
    if (string_of(a, "state") != "available") state += " (agent: " + string_of(a, "state") + ")";
    if (bool_of(a, "down")) up = "agent down";
  }
  const json::value* check = member(n, "check");
  if (check != nullptr && check->is_object()) {
    const auto& c = check->as_object();
    if (bool_of(c, "down")) {
      up = "check " + string_of(c, "last_result") + " since " + string_of(c, "last_change");
    }
  }
  const std::string in_force = number_of(n, "effective_load_factor");
  if (in_force != "-" && in_force != load) load = in_force + "/" + load;
  const json::value* ramp = member(n, "slow_start");
  if (ramp != nullptr && ramp->is_object()) {
    load += " (ramp " + number_of(ramp->as_object(), "remaining_ms") + " ms)";
  }
}

// "listener L routes by TLS server name: a.example.com, *.a.example.com -> api" per route.
std::string format_sni_routes(const boost::json::object& status) {
  std::string text;
  const json::array* listeners = array_of(status, "listeners");
  if (listeners == nullptr) return text;
  for (const auto& item : *listeners) {
    if (!item.is_object()) continue;
    const json::array* routes = array_of(item.as_object(), "sni_routes");
    if (routes == nullptr) continue;
    for (const auto& route_item : *routes) {
      if (!route_item.is_object()) continue;
      const auto& route = route_item.as_object();
      std::string names;
      if (const json::array* sni = array_of(route, "sni")) {
        for (const auto& name : *sni) {
          if (!name.is_string()) continue;
          if (!names.empty()) names += ", ";
          names += std::string_view(name.as_string());
        }
      }
      text += "listener ";
      text += string_of(item.as_object(), "name");
      text += " routes by TLS server name: ";
      text += names;
      text += " -> ";
      text += string_of(route, "cluster");
      text += '\n';
    }
  }
  return text;
}

}  // namespace

std::string format_status(const boost::json::object& status) {
  std::string text;
  std::vector<std::vector<std::string>> rows;
  if (const json::array* listeners = array_of(status, "listeners")) {
    for (const auto& item : *listeners) {
      if (!item.is_object()) continue;
      const auto& l = item.as_object();
      std::string cluster = string_of(l, "cluster");
      if (bool_of(l, "routed")) cluster += " (routed; configured: " + string_of(l, "configured_cluster") + ")";
      rows.push_back({string_of(l, "name"), string_of(l, "address"), cluster,
                      number_of(l, "active"), number_of(l, "connections")});
    }
  }
  text += format_columns({{"LISTENER"}, {"ADDRESS"}, {"CLUSTER"}, {"ACTIVE", true},
                          {"CONNECTIONS", true}},
                         rows, "");
  text += format_sni_routes(status);
  if (const json::array* clusters = array_of(status, "clusters")) {
    for (const auto& item : *clusters) {
      if (!item.is_object()) continue;
      const auto& c = item.as_object();
      text += "\ncluster " + string_of(c, "name") + ": " + string_of(c, "algorithm") +
              ", affinity " + (bool_of(c, "affinity") ? "on" : "off") + '\n';
      rows.clear();
      if (const json::array* nodes = array_of(c, "nodes")) {
        for (const auto& node_item : *nodes) {
          if (!node_item.is_object()) continue;
          const auto& n = node_item.as_object();
          std::string up =
              bool_of(n, "up") ? std::string("up") : "down since " + string_of(n, "since");
          const std::string max = number_of(n, "max_connections");
          std::string state = string_of(n, "state");
          std::string load = number_of(n, "load_factor");
          describe_health(n, state, up, load);
          rows.push_back({string_of(n, "name"), string_of(n, "address"), state, up,
                          number_of(n, "active"), number_of(n, "total"), number_of(n, "failures"),
                          number_of(n, "failovers"), load,
                          max == "0" ? std::string("-") : max, number_of(n, "tier"),
                          string_of(n, "fallover")});
        }
      }
      text += format_columns({{"NODE"}, {"ADDRESS"}, {"STATE"}, {"UP"}, {"ACTIVE", true},
                              {"TOTAL", true}, {"FAILURES", true}, {"FAILOVERS", true},
                              {"LOAD", true}, {"MAX", true}, {"TIER", true}, {"FALLOVER"}},
                             rows, "  ");
    }
  }
  return text;
}

}  // namespace pb::control
