// Balance-specific checks of a loaded configuration: the algorithm and its keys, and the node
// graph (fall-over links, tiers, initial states). They run at load and reload, so a file that
// would leave a cluster unable to choose a node is refused before it replaces the running one.

#include <cstdint>
#include <string>
#include <vector>

#include "protobalance/balance/algorithm.hpp"

namespace pb::balance {
namespace {

using config::ClusterConfig;
using config::SourcePos;

// A key's own position when the file set it, else the enclosing table's.
SourcePos or_else(SourcePos pos, SourcePos fallback) {
  return pos.line != 0 ? pos : fallback;
}

std::string known_algorithm_names() {
  std::string names;
  for (const auto& entry : algorithms()) {
    if (!names.empty()) names += ", ";
    names += entry.name;
  }
  return names;
}

class ClusterValidator {
 public:
  ClusterValidator(const config::Config& cfg, const ClusterConfig& cluster,
                   std::vector<config::Diagnostic>& errors)
      : file_(cfg.file.string()), cluster_(cluster), errors_(errors) {}

  void run() {
    check_algorithm();
    check_nodes();
    check_fallover_cycles();
    check_not_all_offline();
  }

 private:
  void report(SourcePos pos, std::string message) {
    errors_.push_back(config::Diagnostic{file_, pos, std::move(message)});
  }

  void check_algorithm() {
    const AlgorithmEntry* entry = find_algorithm(cluster_.algorithm);
    if (entry == nullptr) {
      report(or_else(cluster_.algorithm_pos, cluster_.pos),
             "unknown algorithm \"" + cluster_.algorithm + "\" in cluster \"" + cluster_.name +
                 "\"; expected one of " + known_algorithm_names());
      return;
    }
    if (entry->validate == nullptr) return;
    std::string message = entry->validate(cluster_);
    if (message.empty()) return;
    const SourcePos key_pos = entry->key_pos != nullptr ? cluster_.*(entry->key_pos) : SourcePos{};
    report(or_else(key_pos, cluster_.pos), std::move(message));
  }

  // Resolves fall-over names into indexes (for the cycle check) and reports bad links and tiers.
  void check_nodes() {
    const auto& nodes = cluster_.nodes;
    next_.assign(nodes.size(), -1);
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      const auto& node = nodes[i];
      if (node.tier < 1) {
        report(or_else(node.tier_pos, node.pos),
               "node \"" + node.name + "\": tier must be 1 or more (1 is used first)");
      }
      if (node.fallover.empty()) continue;
      const SourcePos where = or_else(node.fallover_pos, node.pos);
      if (node.fallover == node.name) {
        report(where, "node \"" + node.name + "\" cannot fall over to itself");
        continue;
      }
      const std::int32_t target = index_of(node.fallover);
      if (target < 0) {
        report(where, "node \"" + node.name + "\": fallover names \"" + node.fallover +
                          "\", which is not a node of cluster \"" + cluster_.name + "\"");
        continue;
      }
      next_[i] = target;
    }
  }

  // Fall-over links form a graph where every node has at most one successor, so each walk from
  // an unvisited node either ends, joins an earlier walk, or closes a cycle on itself. A cycle is
  // reported once, at the node whose link closes it (the last one reached), naming the loop.
  void check_fallover_cycles() {
    enum class Mark : std::uint8_t { unvisited, on_path, done };
    std::vector<Mark> mark(next_.size(), Mark::unvisited);
    std::vector<std::size_t> path;
    for (std::size_t start = 0; start < next_.size(); ++start) {
      path.clear();
      std::int32_t cur = static_cast<std::int32_t>(start);
      while (cur >= 0 && mark[static_cast<std::size_t>(cur)] == Mark::unvisited) {
        mark[static_cast<std::size_t>(cur)] = Mark::on_path;
        path.push_back(static_cast<std::size_t>(cur));
        cur = next_[static_cast<std::size_t>(cur)];
      }
      if (cur >= 0 && mark[static_cast<std::size_t>(cur)] == Mark::on_path) {
        report_cycle(path, static_cast<std::size_t>(cur));
      }
      for (const std::size_t i : path) mark[i] = Mark::done;
    }
  }

  void report_cycle(const std::vector<std::size_t>& path, std::size_t entry) {
    std::string loop;
    bool in_loop = false;
    for (const std::size_t i : path) {
      in_loop = in_loop || i == entry;
      if (in_loop) loop += cluster_.nodes[i].name + " -> ";
    }
    loop += cluster_.nodes[entry].name;
    const auto& closing = cluster_.nodes[path.back()];
    report(or_else(closing.fallover_pos, closing.pos),
           "fall-over cycle " + loop + "; a chain must end at a node without fallover");
  }

  void check_not_all_offline() {
    if (cluster_.nodes.empty()) return;
    for (const auto& node : cluster_.nodes) {
      if (node.state != config::AdminState::offline) return;
    }
    report(cluster_.pos, "every node of cluster \"" + cluster_.name +
                             "\" is offline, so it could take no connection; set at least one "
                             "node's state to available");
  }

  std::int32_t index_of(const std::string& name) const {
    for (std::size_t i = 0; i < cluster_.nodes.size(); ++i) {
      if (cluster_.nodes[i].name == name) return static_cast<std::int32_t>(i);
    }
    return -1;
  }

  std::string file_;
  const ClusterConfig& cluster_;
  std::vector<config::Diagnostic>& errors_;
  std::vector<std::int32_t> next_;  // per node: index of its fall-over node, -1 = none or invalid
};

}  // namespace

void validate(const config::Config& cfg, std::vector<config::Diagnostic>& errors) {
  for (const auto& cluster : cfg.clusters) ClusterValidator(cfg, cluster, errors).run();
}

}  // namespace pb::balance
