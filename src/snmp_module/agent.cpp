#include "protobalance/metrics/snmp_module.hpp"

// net-snmp's headers must come in this order, config first.
// clang-format off
#include <net-snmp/net-snmp-config.h>
#include <net-snmp/net-snmp-includes.h>
#include <net-snmp/agent/net-snmp-agent-includes.h>
// clang-format on

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace pb::metrics::snmp {

namespace {

constexpr const char* kAppName = "protobalance";

// PROTOBALANCE-MIB: protoBalanceMIB = netSnmpPlaypen.7337; pbObjects = .1;
// pbScalars = .1.1; pbNodeTable = .1.2; pbTwin = .1.3.
constexpr std::array<oid, 12> kScalarsOid = {1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 7337, 1, 1};
constexpr std::array<oid, 12> kNodeTableOid = {1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 7337, 1, 2};
constexpr std::array<oid, 12> kTwinOid = {1, 3, 6, 1, 4, 1, 8072, 9999, 9999, 7337, 1, 3};

enum Scalar : oid { kVersion = 1, kUptime = 2, kActiveConnections = 3, kAffinityEntries = 4 };
enum TwinScalar : oid {
  kTwinConnected = 1,
  kTwinMessagesSent = 2,
  kTwinMessagesReceived = 3,
  kTwinLookupsHit = 4,
  kTwinLookupsMiss = 5,
  kTwinLookupsTimeout = 6,
  kTwinsHeard = 7,
};
enum Column : unsigned {
  kAddress = 3,
  kState = 4,
  kUp = 5,
  kActive = 6,
  kTotal = 7,
  kFailures = 8,
  kBytesToNode = 9,
  kBytesToClient = 10,
};

u_long gauge32(std::uint64_t value) {
  return static_cast<u_long>(
      std::min<std::uint64_t>(value, std::numeric_limits<std::uint32_t>::max()));
}

void set_counter64(netsnmp_variable_list* var, std::uint64_t value) {
  counter64 c{};
  c.high = static_cast<u_long>(value >> 32);
  c.low = static_cast<u_long>(value & 0xffffffffU);
  snmp_set_var_typed_value(var, ASN_COUNTER64, &c, sizeof(c));
}

void set_unsigned(netsnmp_variable_list* var, u_char type, u_long value) {
  snmp_set_var_typed_value(var, type, &value, sizeof(value));
}

void set_integer(netsnmp_variable_list* var, long value) {
  snmp_set_var_typed_value(var, ASN_INTEGER, &value, sizeof(value));
}

void set_string(netsnmp_variable_list* var, const std::string& text) {
  snmp_set_var_typed_value(var, ASN_OCTET_STR, text.data(), text.size());
}

}  // namespace

// The running sub-agent: net-snmp's agent library on a thread of its own (net-snmp is not
// thread-safe; nothing else in the process uses it). Only one can exist per process.
struct SubAgent final : Agent {
  SubAgent(const DataSource& s, AgentOptions o) : source(s), options(std::move(o)) {}
  ~SubAgent() override;

  const DataSource& source;
  const AgentOptions options;
  std::vector<NodeRow> rows;  // agent thread only
  std::string last_warning;   // agent thread only
  std::atomic<bool> stop{false};
  std::array<int, 2> wake_pipe{-1, -1};
  std::thread thread;

  void run();
  void register_objects();
  void refresh_rows();
  void log(const snmp_log_message& message);

  // ---- net-snmp callbacks (C linkage not needed: net-snmp only calls through pointers) ----
  static int on_log(int major, int minor, void* server_arg, void* client_arg);
  static void on_wake(int fd, void* data);
  static int handle_scalars(netsnmp_mib_handler* handler, netsnmp_handler_registration* reg,
                            netsnmp_agent_request_info* info, netsnmp_request_info* requests);
  static int handle_node_table(netsnmp_mib_handler* handler, netsnmp_handler_registration* reg,
                               netsnmp_agent_request_info* info, netsnmp_request_info* requests);
  static int handle_twin(netsnmp_mib_handler* handler, netsnmp_handler_registration* reg,
                         netsnmp_agent_request_info* info, netsnmp_request_info* requests);
  static netsnmp_variable_list* first_row(void** loop, void** data, netsnmp_variable_list* index,
                                          netsnmp_iterator_info* iinfo);
  static netsnmp_variable_list* next_row(void** loop, void** data, netsnmp_variable_list* index,
                                         netsnmp_iterator_info* iinfo);
};

namespace {
std::atomic<bool> agent_exists{false};
// The running agent (a SubAgent), for net-snmp's log callback, which cannot get it as its client
// argument: net-snmp frees those at shutdown. Used by the agent thread only.
void* logging_agent = nullptr;
}  // namespace

void SubAgent::run() {
  // Every net-snmp call happens on this thread, from set-up to shutdown.
  logging_agent = this;
  snmp_disable_log();
  snmp_register_callback(SNMP_CALLBACK_LIBRARY, SNMP_CALLBACK_LOGGING, &SubAgent::on_log, nullptr);
  snmp_enable_calllog();

  netsnmp_ds_set_boolean(NETSNMP_DS_APPLICATION_ID, NETSNMP_DS_AGENT_ROLE, 1);  // sub-agent
  netsnmp_ds_set_string(NETSNMP_DS_APPLICATION_ID, NETSNMP_DS_AGENT_X_SOCKET,
                        options.agentx.c_str());
  // net-snmp's timers would otherwise use alarm() and SIGALRM, which could land on any thread.
  netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_ALARM_DONT_USE_SIG, 1);
  // Keep no state files (/var/lib/snmp/protobalance.conf): there is nothing to persist.
  netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_LOAD, 1);
  netsnmp_ds_set_boolean(NETSNMP_DS_LIBRARY_ID, NETSNMP_DS_LIB_DISABLE_PERSISTENT_SAVE, 1);

  init_agent(kAppName);
  // After init_agent(), which sets net-snmp's default (15 s). With a ping interval, a missing
  // master is retried at that interval instead of given up on, and a master that restarted is
  // noticed and registered with again.
  netsnmp_ds_set_int(NETSNMP_DS_APPLICATION_ID, NETSNMP_DS_AGENT_AGENTX_PING_INTERVAL,
                     options.ping_interval_seconds);
  register_objects();
  register_readfd(wake_pipe[0], &SubAgent::on_wake, this);
  spdlog::info("snmp: AgentX sub-agent for PROTOBALANCE-MIB using master socket {}",
               options.agentx);
  init_snmp(kAppName);  // connects to the master (or schedules the retries)

  while (!stop.load()) {
    // Returns after a request, a timer (ping, reconnect) or a byte on the wake-up pipe.
    agent_check_and_process(1);
  }
  unregister_readfd(wake_pipe[0]);
  snmp_shutdown(kAppName);
  snmp_disable_log();
  logging_agent = nullptr;
}

void SubAgent::on_wake(int fd, void* /*data*/) {
  std::array<char, 16> drain{};
  while (::read(fd, drain.data(), drain.size()) > 0) {
  }
}

// net-snmp's log lines, in our log. A warning repeated word for word (the retries while the
// master is away) is logged once, then at debug until something else is said.
int SubAgent::on_log(int /*major*/, int /*minor*/, void* server_arg, void* /*client_arg*/) {
  if (logging_agent != nullptr) {
    static_cast<SubAgent*>(logging_agent)->log(*static_cast<snmp_log_message*>(server_arg));
  }
  return 1;
}

void SubAgent::log(const snmp_log_message& message) {
  std::string text = message.msg == nullptr ? "" : message.msg;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == ':')) {
    text.pop_back();
  }
  for (const std::string_view prefix : {"Warning: ", "Error: "}) {
    if (text.starts_with(prefix)) text.erase(0, prefix.size());
  }
  if (text.empty()) return;
  if (message.priority <= LOG_WARNING) {
    if (text == last_warning) {
      spdlog::debug("snmp: {}", text);
      return;
    }
    last_warning = text;
    if (message.priority <= LOG_ERR) {
      spdlog::error("snmp: {}", text);
    } else {
      spdlog::warn("snmp: {}", text);
    }
    return;
  }
  last_warning.clear();
  if (message.priority <= LOG_INFO) {
    spdlog::info("snmp: {}", text);
  } else {
    spdlog::debug("snmp: {}", text);
  }
}

void SubAgent::register_objects() {
  netsnmp_handler_registration* scalars =
      netsnmp_create_handler_registration("pbScalars", &SubAgent::handle_scalars, kScalarsOid.data(),
                                          kScalarsOid.size(), HANDLER_CAN_RONLY);
  scalars->my_reg_void = this;
  netsnmp_register_scalar_group(scalars, kVersion, kAffinityEntries);

  netsnmp_handler_registration* twin = netsnmp_create_handler_registration(
      "pbTwin", &SubAgent::handle_twin, kTwinOid.data(), kTwinOid.size(), HANDLER_CAN_RONLY);
  twin->my_reg_void = this;
  netsnmp_register_scalar_group(twin, kTwinConnected, kTwinsHeard);

  netsnmp_handler_registration* table = netsnmp_create_handler_registration(
      "pbNodeTable", &SubAgent::handle_node_table, kNodeTableOid.data(), kNodeTableOid.size(),
      HANDLER_CAN_RONLY);
  table->my_reg_void = this;
  auto* table_info = SNMP_MALLOC_TYPEDEF(netsnmp_table_registration_info);
  netsnmp_table_helper_add_indexes(table_info, ASN_OCTET_STR, ASN_OCTET_STR, 0);  // cluster, node
  table_info->min_column = kAddress;
  table_info->max_column = kBytesToClient;
  auto* iinfo = SNMP_MALLOC_TYPEDEF(netsnmp_iterator_info);
  iinfo->get_first_data_point = &SubAgent::first_row;
  iinfo->get_next_data_point = &SubAgent::next_row;
  iinfo->table_reginfo = table_info;
  iinfo->myvoid = this;
  netsnmp_register_table_iterator2(table, iinfo);
}

int SubAgent::handle_scalars(netsnmp_mib_handler* /*handler*/,
                                    netsnmp_handler_registration* reg,
                                    netsnmp_agent_request_info* info,
                                    netsnmp_request_info* requests) {
  // The scalar group helper has turned GETNEXT into GET and answers everything else.
  if (info->mode != MODE_GET) return SNMP_ERR_NOERROR;
  const auto* self = static_cast<const SubAgent*>(reg->my_reg_void);
  for (netsnmp_request_info* r = requests; r != nullptr; r = r->next) {
    netsnmp_variable_list* var = r->requestvb;
    // The helpers have appended the object's sub-identifier and .0 to reg->rootoid; the
    // object is the sub-identifier right after pbScalars.
    if (var->name_length <= kScalarsOid.size()) continue;
    switch (var->name[kScalarsOid.size()]) {
      case kVersion:
        set_string(var, self->options.version);
        break;
      case kUptime: {
        const auto ticks = self->source.uptime().count() / 10;
        set_unsigned(var, ASN_TIMETICKS,
                     gauge32(static_cast<std::uint64_t>(std::max<long long>(ticks, 0))));
        break;
      }
      case kActiveConnections:
        set_unsigned(var, ASN_GAUGE, gauge32(self->source.active_connections()));
        break;
      case kAffinityEntries:
        if (const auto entries = self->source.affinity_entries()) {
          set_unsigned(var, ASN_GAUGE, gauge32(*entries));
        } else {
          netsnmp_set_request_error(info, r, SNMP_NOSUCHINSTANCE);
        }
        break;
      default:
        netsnmp_set_request_error(info, r, SNMP_NOSUCHOBJECT);
    }
  }
  return SNMP_ERR_NOERROR;
}

// The pbTwin group: all noSuchInstance without [twin]. The figures are read once per request.
int SubAgent::handle_twin(netsnmp_mib_handler* /*handler*/, netsnmp_handler_registration* reg,
                          netsnmp_agent_request_info* info, netsnmp_request_info* requests) {
  if (info->mode != MODE_GET) return SNMP_ERR_NOERROR;
  const auto* self = static_cast<const SubAgent*>(reg->my_reg_void);
  const std::optional<TwinFigures> twin = self->source.twin();
  for (netsnmp_request_info* r = requests; r != nullptr; r = r->next) {
    netsnmp_variable_list* var = r->requestvb;
    if (var->name_length <= kTwinOid.size()) continue;
    if (!twin) {
      netsnmp_set_request_error(info, r, SNMP_NOSUCHINSTANCE);
      continue;
    }
    switch (var->name[kTwinOid.size()]) {
      case kTwinConnected:
        set_integer(var, twin->connected ? 1 : 2);
        break;
      case kTwinMessagesSent:
        set_counter64(var, twin->messages_sent);
        break;
      case kTwinMessagesReceived:
        set_counter64(var, twin->messages_received);
        break;
      case kTwinLookupsHit:
        set_counter64(var, twin->lookups_hit);
        break;
      case kTwinLookupsMiss:
        set_counter64(var, twin->lookups_miss);
        break;
      case kTwinLookupsTimeout:
        set_counter64(var, twin->lookups_timeout);
        break;
      case kTwinsHeard:
        set_unsigned(var, ASN_GAUGE, gauge32(twin->twins_heard));
        break;
      default:
        netsnmp_set_request_error(info, r, SNMP_NOSUCHOBJECT);
    }
  }
  return SNMP_ERR_NOERROR;
}

// The iterator helper walks every row for each request (tables here have tens of rows), so the
// rows are copied from the source once per walk, in first_row(), and point into `rows` until
// the next walk.
void SubAgent::refresh_rows() { source.node_rows(rows); }

namespace {

netsnmp_variable_list* put_index(netsnmp_variable_list* index, const NodeRow& row) {
  snmp_set_var_value(index, row.cluster.data(), row.cluster.size());
  snmp_set_var_value(index->next_variable, row.node.data(), row.node.size());
  return index;
}

}  // namespace

netsnmp_variable_list* SubAgent::first_row(void** loop, void** data,
                                                  netsnmp_variable_list* index,
                                                  netsnmp_iterator_info* iinfo) {
  auto* self = static_cast<SubAgent*>(iinfo->myvoid);
  self->refresh_rows();
  if (self->rows.empty()) return nullptr;
  *loop = &self->rows.front();
  *data = &self->rows.front();
  return put_index(index, self->rows.front());
}

netsnmp_variable_list* SubAgent::next_row(void** loop, void** data,
                                                 netsnmp_variable_list* index,
                                                 netsnmp_iterator_info* iinfo) {
  auto* self = static_cast<SubAgent*>(iinfo->myvoid);
  auto* row = static_cast<NodeRow*>(*loop) + 1;
  if (row >= self->rows.data() + self->rows.size()) return nullptr;
  *loop = row;
  *data = row;
  return put_index(index, *row);
}

int SubAgent::handle_node_table(netsnmp_mib_handler* /*handler*/,
                                       netsnmp_handler_registration* /*reg*/,
                                       netsnmp_agent_request_info* info,
                                       netsnmp_request_info* requests) {
  // The iterator helper has found the row of each request (GETNEXT turned into GET).
  if (info->mode != MODE_GET) return SNMP_ERR_NOERROR;
  for (netsnmp_request_info* r = requests; r != nullptr; r = r->next) {
    if (r->processed != 0) continue;
    const auto* row = static_cast<const NodeRow*>(netsnmp_extract_iterator_context(r));
    const netsnmp_table_request_info* cell = netsnmp_extract_table_info(r);
    if (row == nullptr || cell == nullptr) {
      netsnmp_set_request_error(info, r, SNMP_NOSUCHINSTANCE);
      continue;
    }
    netsnmp_variable_list* var = r->requestvb;
    switch (cell->colnum) {
      case kAddress:
        set_string(var, row->address);
        break;
      case kState:
        set_integer(var, row->state);
        break;
      case kUp:
        set_integer(var, row->up);
        break;
      case kActive:
        set_unsigned(var, ASN_GAUGE, gauge32(row->active));
        break;
      case kTotal:
        set_counter64(var, row->total);
        break;
      case kFailures:
        set_counter64(var, row->failures);
        break;
      case kBytesToNode:
        set_counter64(var, row->bytes_to_node);
        break;
      case kBytesToClient:
        set_counter64(var, row->bytes_to_client);
        break;
      default:
        netsnmp_set_request_error(info, r, SNMP_NOSUCHOBJECT);
    }
  }
  return SNMP_ERR_NOERROR;
}

SubAgent::~SubAgent() {
  stop = true;
  const char byte = 1;
  [[maybe_unused]] const auto written = ::write(wake_pipe[1], &byte, 1);
  thread.join();
  ::close(wake_pipe[0]);
  ::close(wake_pipe[1]);
  agent_exists = false;
}

}  // namespace pb::metrics::snmp

extern "C" __attribute__((visibility("default"))) pb::metrics::snmp::Agent* pb_snmp_start(
    const pb::metrics::snmp::DataSource& source, const pb::metrics::snmp::AgentOptions& options,
    std::string& error) {
  using pb::metrics::snmp::SubAgent;
  if (pb::metrics::snmp::agent_exists.exchange(true)) {
    error = "only one SNMP sub-agent can run in a process";
    return nullptr;
  }
  auto agent = std::make_unique<SubAgent>(source, options);
  if (::pipe2(agent->wake_pipe.data(), O_CLOEXEC | O_NONBLOCK) != 0) {
    pb::metrics::snmp::agent_exists = false;
    error = std::string("cannot create a pipe: ") + std::strerror(errno);
    return nullptr;
  }
  agent->thread = std::thread([a = agent.get()] { a->run(); });
  return agent.release();
}
