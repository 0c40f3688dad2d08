#include "protobalance/metrics/prometheus.hpp"

#include <CivetServer.h>
#include <fmt/format.h>
#include <prometheus/collectable.h>
#include <prometheus/exposer.h>
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "protobalance/balance/node.hpp"
#include "protobalance/config/address.hpp"
#include "protobalance/control/status.hpp"
#include "protobalance/version.hpp"

namespace pb::metrics {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = "protobalance_" + std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add_counter(MetricFamily& f, Labels labels, double value) {
  ClientMetric& m = f.metric.emplace_back();
  m.label = std::move(labels);
  m.counter.value = value;
}

void add_gauge(MetricFamily& f, Labels labels, double value) {
  ClientMetric& m = f.metric.emplace_back();
  m.label = std::move(labels);
  m.gauge.value = value;
}

double as_double(std::uint64_t value) {
  return static_cast<double>(value);
}

// The histogram of one node's connect times, from its per-bucket (non-cumulative) counts. The
// buckets were read one by one while workers may add to them; a sample landing mid-read is seen
// in the count of the next scrape, never twice, and the count stays the +Inf bucket's value.
void add_connect_histogram(MetricFamily& f, Labels labels, const control::NodeStatus& node) {
  ClientMetric& m = f.metric.emplace_back();
  m.label = std::move(labels);
  auto& buckets = m.histogram.bucket;
  buckets.reserve(node.connect_buckets.size());
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < node.connect_buckets.size(); ++i) {
    cumulative += node.connect_buckets[i];
    ClientMetric::Bucket& b = buckets.emplace_back();
    b.cumulative_count = cumulative;
    b.upper_bound = i < balance::kConnectBuckets.size() ? balance::kConnectBuckets[i]
                                                        : std::numeric_limits<double>::infinity();
  }
  m.histogram.sample_count = cumulative;
  m.histogram.sample_sum = as_double(node.connect_time_sum_us) / 1e6;
}

// The node families, filled in one walk over the current snapshot.
struct NodeFamilies {
  MetricFamily active =
      family("node_connections_active",
             "Connections being attempted to or relayed through the node now.", MetricType::Gauge);
  MetricFamily total =
      family("node_connections_total", "Connections established to the node.", MetricType::Counter);
  MetricFamily failures =
      family("node_connect_failures_total",
             "Connection attempts to the node that failed before any byte was relayed, by reason "
             "(refused, timeout, reset, closed, unreachable).",
             MetricType::Counter);
  MetricFamily bytes = family("node_bytes_total",
                              "Bytes relayed through the node, by direction (to_node: from "
                              "clients to the node; to_client: back), counted when a connection "
                              "ends.",
                              MetricType::Counter);
  MetricFamily connect =
      family("node_connect_duration_seconds", "Time to establish the TCP connection to the node.",
             MetricType::Histogram);
  MetricFamily latency = family("node_connect_latency_ewma_seconds",
                                "Moving average of the connect time that least_latency balances "
                                "on; absent until the node's first connection.",
                                MetricType::Gauge);
  MetricFamily state = family("node_state",
                              "Operator-set state of the node: 0 = available, 1 = draining, "
                              "2 = offline.",
                              MetricType::Gauge);
  MetricFamily up = family("node_up",
                           "1 when the node is considered reachable, 0 while it is marked "
                           "unavailable after a failed connection (until a probe, a check or a "
                           "client connects), down by failed health checks, or down by its agent.",
                           MetricType::Gauge);
  MetricFamily check_failures =
      family("node_check_failures_total",
             "Failed active health checks of the node ([cluster.health]), by reason (timeout, "
             "refused, reset, closed, mismatch).",
             MetricType::Counter);
  MetricFamily agent_values = family("node_agent_value",
                                     "The last good name=value figures the node's agent reported "
                                     "([cluster.agent]), by name.",
                                     MetricType::Gauge);
  MetricFamily failovers = family("failovers_total",
                                  "Client connections that failed on this node before any byte "
                                  "and were retried on another node.",
                                  MetricType::Counter);

  void add(const std::string& cluster, const control::NodeStatus& node) {
    const Labels labels{{"cluster", cluster}, {"node", node.name}};
    const auto with = [&labels](const char* name, std::string_view value) {
      Labels out = labels;
      out.push_back({name, std::string(value)});
      return out;
    };
    add_gauge(active, labels, static_cast<double>(node.active));
    add_counter(total, labels, as_double(node.total));
    for (std::size_t i = 0; i < node.failures.size(); ++i) {
      add_counter(failures,
                  with("reason", balance::to_string(static_cast<balance::FailureReason>(i))),
                  as_double(node.failures[i]));
    }
    add_counter(bytes, with("direction", "to_node"), as_double(node.bytes_to_node));
    add_counter(bytes, with("direction", "to_client"), as_double(node.bytes_to_client));
    add_connect_histogram(connect, labels, node);
    if (node.latency_ewma_us) {
      add_gauge(latency, labels, static_cast<double>(*node.latency_ewma_us) / 1e6);
    }
    add_gauge(state, labels, static_cast<double>(static_cast<int>(node.state)));
    add_gauge(up, labels, node.serving() ? 1.0 : 0.0);
    for (std::size_t i = 0; i < node.check_failures.size(); ++i) {
      add_counter(check_failures,
                  with("reason", balance::to_string(static_cast<balance::CheckResult>(i))),
                  as_double(node.check_failures[i]));
    }
    for (const auto& value : node.agent_values) {
      add_gauge(agent_values, with("name", value.name), value.value);
    }
    add_counter(failovers, labels, as_double(node.failovers));
  }

  void move_into(std::vector<MetricFamily>& out) {
    for (MetricFamily* f :
         {&active, &total, &failures, &bytes, &connect, &latency, &state, &up, &failovers,
          &check_failures, &agent_values}) {
      out.push_back(std::move(*f));
    }
  }
};

void collect_service(const control::Status& status, std::vector<MetricFamily>& out) {
  MetricFamily build = family("build_info",
                              "Proto Balance build; the version is in the label, the value is "
                              "always 1.",
                              MetricType::Gauge);
  add_gauge(build, {{"version", pb::kVersion}}, 1);
  out.push_back(std::move(build));

  MetricFamily start =
      family("process_start_time_seconds",
             "Start time of the process since the Unix epoch, in seconds.", MetricType::Gauge);
  add_gauge(start, {},
            std::chrono::duration<double>(process_start_time().time_since_epoch()).count());
  out.push_back(std::move(start));

  MetricFamily sessions =
      family("client_connections_active",
             "Client connections being served now, over all listeners.", MetricType::Gauge);
  add_gauge(sessions, {}, as_double(status.active_sessions));
  out.push_back(std::move(sessions));

  MetricFamily pauses = family("accept_pauses_total",
                               "Times a listener paused accepting because the process had run "
                               "out of file descriptors (EMFILE, ENFILE).",
                               MetricType::Counter);
  add_counter(pauses, {}, as_double(status.accept_pauses));
  out.push_back(std::move(pauses));
}

void collect_listeners(const control::Status& status, std::vector<MetricFamily>& out) {
  MetricFamily connections =
      family("listener_connections_total", "Client connections accepted by the listener.",
             MetricType::Counter);
  MetricFamily active =
      family("listener_connections_active", "Client connections of the listener being served now.",
             MetricType::Gauge);
  MetricFamily rejected = family("listener_rejected_total",
                                 "Accepted clients closed without being served, by reason "
                                 "(no_node: no node of the cluster could take them; "
                                 "descriptors: the process ran out of file descriptors; "
                                 "proxy: a bad, missing, late or untrusted PROXY header; "
                                 "denied: source refused by allow/deny; client_limit: "
                                 "max_client_connections reached; client_rate: max_client_rate "
                                 "exceeded; validation: first bytes did not match "
                                 "[listener.validate]; tls: no valid TLS ClientHello where SNI "
                                 "routes need one; blocked: source on the block list "
                                 "(pbadmin block)).",
                                 MetricType::Counter);
  MetricFamily route = family("listener_route",
                              "Where the listener sends new connections: the cluster is in the "
                              "label, the value is always 1.",
                              MetricType::Gauge);
  // Only the listeners of the current configuration; stats of removed ones are kept for a
  // listener that comes back, but are not reported.
  for (const control::ListenerStatus& l : status.listeners) {
    add_gauge(route, {{"listener", l.name}, {"cluster", l.cluster}}, 1);
    add_counter(connections, {{"listener", l.name}}, as_double(l.connections));
    add_gauge(active, {{"listener", l.name}}, static_cast<double>(l.active));
    for (const auto& [reason, count] : l.rejected) {
      add_counter(rejected, {{"listener", l.name}, {"reason", reason}}, as_double(count));
    }
  }
  out.push_back(std::move(connections));
  out.push_back(std::move(active));
  out.push_back(std::move(rejected));
  out.push_back(std::move(route));
}

void collect_extra(const ExtraSources& extra, std::vector<MetricFamily>& out) {
  if (extra.affinity_entries) {
    MetricFamily f = family("affinity_entries",
                            "Clients remembered by client affinity (in memory, mirrored in the "
                            "database).",
                            MetricType::Gauge);
    add_gauge(f, {}, as_double(extra.affinity_entries()));
    out.push_back(std::move(f));
  }
  if (extra.blocks) {
    MetricFamily f = family("blocks",
                            "Blocks in force, set at run time with pbadmin block (ended ones "
                            "not counted).",
                            MetricType::Gauge);
    add_gauge(f, {}, as_double(extra.blocks()));
    out.push_back(std::move(f));
  }
  if (extra.affinity_lookups) {
    MetricFamily f = family("affinity_lookups_total",
                            "Affinity lookups by cluster and result (hit: the remembered node "
                            "took the client; miss: no entry; moved: the remembered node could "
                            "not take it and the client was moved).",
                            MetricType::Counter);
    for (const auto& [cluster, lookups] : extra.affinity_lookups()) {
      add_counter(f, {{"cluster", cluster}, {"result", "hit"}}, as_double(lookups.hit));
      add_counter(f, {{"cluster", cluster}, {"result", "miss"}}, as_double(lookups.miss));
      add_counter(f, {{"cluster", cluster}, {"result", "moved"}}, as_double(lookups.moved));
    }
    out.push_back(std::move(f));
  }
  if (extra.config_reloads) {
    const ConfigReloads reloads = extra.config_reloads();
    MetricFamily f = family("config_reloads_total",
                            "Configuration reloads by result (error: the new file was refused "
                            "and the previous configuration kept running).",
                            MetricType::Counter);
    add_counter(f, {{"result", "ok"}}, as_double(reloads.ok));
    add_counter(f, {{"result", "error"}}, as_double(reloads.error));
    out.push_back(std::move(f));
  }
  if (extra.store_write_errors) {
    MetricFamily f = family("store_write_errors_total",
                            "Affinity store transactions that could not be written to the "
                            "database (forwarding carries on).",
                            MetricType::Counter);
    add_counter(f, {}, as_double(extra.store_write_errors()));
    out.push_back(std::move(f));
  }
  if (extra.store_queue_depth) {
    MetricFamily f = family("affinity_store_queue_depth",
                            "Affinity changes waiting for the store's writer (bounded; beyond "
                            "the bound the oldest are dropped).",
                            MetricType::Gauge);
    add_gauge(f, {}, as_double(extra.store_queue_depth()));
    out.push_back(std::move(f));
  }
  if (extra.access_log) {
    const AccessLogCounts counts = extra.access_log();
    MetricFamily f = family("access_log_records_total",
                            "Access log records by fate (written; dropped: the queue was full; "
                            "failed: the file could not be written).",
                            MetricType::Counter);
    add_counter(f, {{"result", "written"}}, as_double(counts.written));
    add_counter(f, {{"result", "dropped"}}, as_double(counts.dropped));
    add_counter(f, {{"result", "failed"}}, as_double(counts.failed));
    out.push_back(std::move(f));
  }
}

// [twin]: only with it (a balancer that works alone has no link to report).
void collect_twin(const control::Status& status, std::vector<MetricFamily>& out) {
  if (!status.twin) return;
  const control::TwinStatus& twin = *status.twin;
  MetricFamily connected = family("twin_connected",
                                  "1 while the link to the twins' Redis is up, else 0 (the "
                                  "balancer then decides alone).",
                                  MetricType::Gauge);
  add_gauge(connected, {}, twin.connected ? 1 : 0);
  out.push_back(std::move(connected));
  MetricFamily messages = family("twin_messages_total",
                                 "Changes published to the twins (sent) and received from them "
                                 "(received).",
                                 MetricType::Counter);
  add_counter(messages, {{"direction", "sent"}}, as_double(twin.messages_sent));
  add_counter(messages, {{"direction", "received"}}, as_double(twin.messages_received));
  out.push_back(std::move(messages));
  MetricFamily lookups = family("twin_lookups_total",
                                "Clients unknown locally looked up in Redis, by result (hit: a "
                                "twin knew the client; miss: nobody did; timeout: no answer "
                                "within lookup_timeout, or Redis away).",
                                MetricType::Counter);
  add_counter(lookups, {{"result", "hit"}}, as_double(twin.lookups_hit));
  add_counter(lookups, {{"result", "miss"}}, as_double(twin.lookups_miss));
  add_counter(lookups, {{"result", "timeout"}}, as_double(twin.lookups_timeout));
  out.push_back(std::move(lookups));
}

std::vector<MetricFamily> collect(const control::Status& status, const ExtraSources& extra) {
  std::vector<MetricFamily> out;
  collect_service(status, out);
  collect_listeners(status, out);
  NodeFamilies nodes;
  for (const control::ClusterStatus& cluster : status.clusters) {
    for (const control::NodeStatus& node : cluster.nodes) nodes.add(cluster.name, node);
  }
  nodes.move_into(out);
  collect_extra(extra, out);
  collect_twin(status, out);
  // A family without samples (no node has a latency yet, no listener) would be only its HELP.
  std::erase_if(out, [](const MetricFamily& f) { return f.metric.empty(); });
  return out;
}

// What prometheus-cpp calls at each scrape, on a civetweb thread.
class StatusCollectable final : public prometheus::Collectable {
 public:
  StatusCollectable(StatusSource status, ExtraSources extra)
      : status_(std::move(status)), extra_(std::move(extra)) {}
  std::vector<MetricFamily> Collect() const override { return collect(status_(), extra_); }

 private:
  StatusSource status_;
  ExtraSources extra_;
};

// civetweb reports why it could not start (for example "cannot bind to 127.0.0.1:9187: 98
// (Address already in use)") only through its log callback; the exception prometheus-cpp
// passes on just says "null context". The exposer is built on the calling thread, so a
// thread-local buffer catches the messages of that one construction.
thread_local std::string* civetweb_messages = nullptr;

int capture_civetweb_message(const mg_connection* /*connection*/, const char* message) {
  if (civetweb_messages == nullptr) return 0;  // at run time: let civetweb do its default
  if (!civetweb_messages->empty()) *civetweb_messages += "; ";
  *civetweb_messages += message;
  return 1;
}

// Connects to the exporter's own port and closes again: wakes civetweb's accept thread.
void knock(const config::Endpoint& bound) {
  auto target = bound;
  if (target.address().is_unspecified()) {
    target.address(target.address().is_v6()
                       ? boost::asio::ip::address(boost::asio::ip::address_v6::loopback())
                       : boost::asio::ip::address(boost::asio::ip::address_v4::loopback()));
  }
  const int fd = ::socket(target.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  [[maybe_unused]] const int ignored =
      ::connect(fd, target.data(), static_cast<socklen_t>(target.size()));
  ::close(fd);
}

}  // namespace

std::string render_text(const control::Status& status, const ExtraSources& extra) {
  return prometheus::TextSerializer().Serialize(collect(status, extra));
}

struct PrometheusExporter::Impl {
  std::shared_ptr<StatusCollectable> collectable;
  std::unique_ptr<prometheus::Exposer> exposer;
  config::Endpoint bound;
};

PrometheusExporter::PrometheusExporter(StatusSource status, const config::MetricsConfig& cfg,
                                       ExtraSources extra)
    : impl_(std::make_unique<Impl>()) {
  const std::string bind = config::format_endpoint(cfg.endpoint);
  CivetCallbacks callbacks;
  callbacks.log_message = &capture_civetweb_message;
  std::string messages;
  civetweb_messages = &messages;
  try {
    // Two civetweb worker threads: a scrape is short and Prometheus scrapes one at a time.
    impl_->exposer = std::make_unique<prometheus::Exposer>(
        std::vector<std::string>{"listening_ports", bind, "num_threads", "2"}, &callbacks);
  } catch (const std::exception& e) {
    civetweb_messages = nullptr;
    throw std::runtime_error(fmt::format("metrics: cannot listen on {}: {}", cfg.listen,
                                         messages.empty() ? e.what() : messages));
  }
  civetweb_messages = nullptr;
  impl_->collectable = std::make_shared<StatusCollectable>(std::move(status), std::move(extra));
  impl_->exposer->RegisterCollectable(impl_->collectable);

  const std::vector<int> ports = impl_->exposer->GetListeningPorts();
  const auto port = ports.empty() ? cfg.endpoint.port() : static_cast<unsigned short>(ports[0]);
  impl_->bound = config::Endpoint(cfg.endpoint.address(), port);
  address_ = config::format_endpoint(impl_->bound);
}

// The exposer (and with it every civetweb thread that might be in a scrape) goes first.
PrometheusExporter::~PrometheusExporter() {
  // civetweb's accept thread sees the stop request only when its poll() returns, which it does
  // every 2 s or when a client connects: knocking on the port makes stopping take milliseconds
  // instead of up to 2 s of the balancer's shutdown.
  std::atomic<bool> stopped{false};
  std::thread knocker([this, &stopped] {
    for (int i = 0; i < 150 && !stopped.load(); ++i) {  // at most 3 s, the longest stop
      knock(impl_->bound);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  impl_->exposer.reset();
  stopped = true;
  knocker.join();
}

}  // namespace pb::metrics
