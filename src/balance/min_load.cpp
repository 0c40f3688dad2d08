// Minimum load: the operator writes the load rating of a node as an expression (muparser) over
// its live counters, and the candidate with the lowest rating wins. The default,
// "connections / load_factor", is least connections; "connections * 2 + failures" or
// "latency_ms * connections" shape the choice without a new algorithm.
//
// With [cluster.agent], every other name in the expression is a value the node's agent reports
// (`cpu * 100 + connections / load_factor`); a node whose agent has not reported one of them
// (lately: within three agent intervals) rates after every node that has.
//
// The cluster's one instance is used under the cluster's lock (muparser is not thread-safe);
// the variables are bound to members of that instance once, and a pick only stores numbers and
// evaluates bytecode, so it does not allocate.

#include <chrono>
#include <cstdint>
#include <deque>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

#include <muParser.h>

#include "least_score.hpp"
#include "protobalance/balance/algorithms.hpp"

namespace pb::balance {
namespace {

constexpr const char* kVariableNames = "connections, load_factor, total, failures, latency_ms";

// The variables an expression may use, bound by address into a parser.
struct LoadVariables {
  double connections = 0.0;
  double load_factor = 1.0;
  double total = 0.0;
  double failures = 0.0;
  double latency_ms = 0.0;

  void bind(mu::Parser& parser) {
    parser.DefineVar("connections", &connections);
    parser.DefineVar("load_factor", &load_factor);
    parser.DefineVar("total", &total);
    parser.DefineVar("failures", &failures);
    parser.DefineVar("latency_ms", &latency_ms);
  }

  void load(const Node& node, double effective_load_factor) {
    const NodeRuntime& rt = *node.runtime;
    connections = static_cast<double>(rt.active.load(std::memory_order_relaxed));
    load_factor = effective_load_factor;
    total = static_cast<double>(rt.total.load(std::memory_order_relaxed));
    failures = static_cast<double>(rt.failures_total());
    const auto ewma_us = rt.latency_ewma_us.load(std::memory_order_relaxed);
    latency_ms = ewma_us < 0 ? 0.0 : static_cast<double>(ewma_us) / 1000.0;
  }
};

// Turns a muparser error into a message that says where in the expression it is. muparser's own
// text sometimes carries a 0-based "at position N" and sometimes no position at all; the message
// states it once, 1-based, as an editor would.
std::string describe(const std::string& expression, const mu::ParserError& error) {
  std::string text = error.GetMsg();
  if (const auto at = text.find(" at position "); at != std::string::npos) text.resize(at);
  while (!text.empty() && (text.back() == '.' || text.back() == ' ')) text.pop_back();
  const int pos = error.GetPos();
  if (pos >= 0 && static_cast<std::size_t>(pos) < expression.size()) {
    text += " at character " + std::to_string(pos + 1);
  } else if (pos >= 0) {
    text += " at the end of the expression";
  }
  if (error.GetCode() == mu::ecUNASSIGNABLE_TOKEN) {
    text += std::string("; the variables are ") + kVariableNames +
            " (and, with [cluster.agent], the names its agents report)";
  }
  return "load_rating \"" + expression + "\" is invalid: " + text;
}

// Compiles `expression` into `parser` (whose variables are already bound) by evaluating it once.
// Returns an empty string on success, else the message.
std::string compile(mu::Parser& parser, const std::string& expression) {
  try {
    parser.SetExpr(expression);
    parser.Eval();
  } catch (const mu::ParserError& error) {
    return describe(expression, error);
  }
  if (parser.GetNumResults() != 1) {
    // "a, b" evaluates both and yields the last, which is never what was meant.
    return "load_rating \"" + expression +
           "\" is invalid: it must be one expression, not a comma-separated list";
  }
  return {};
}

// Names the expression uses beyond the built-in ones: values reported by the agent. muparser
// calls make() once per unknown name while compiling; the deque keeps the bound addresses stable.
struct AgentVariables {
  std::deque<AgentValue> values;

  static double* make(const char* name, void* self) {
    auto& values = static_cast<AgentVariables*>(self)->values;
    values.push_back(AgentValue{name, 0.0});
    return &values.back().value;
  }
  void allow_in(mu::Parser& parser) { parser.SetVarFactory(&AgentVariables::make, this); }
};

class MinLoad final : public Algorithm {
 public:
  MinLoad(const config::ClusterConfig& cluster) : least_(cluster.nodes.size()) {
    variables_.bind(parser_);
    if (cluster.agent) {
      agent_.allow_in(parser_);
      // A missing or garbled reply leaves the last good values for three intervals.
      max_age_ns_ =
          3 * std::chrono::duration_cast<std::chrono::nanoseconds>(cluster.agent->interval).count();
    }
    if (auto error = compile(parser_, cluster.load_rating); !error.empty()) {
      throw std::invalid_argument(error);
    }
  }

  std::uint32_t pick(const PickInput& in) override {
    std::int64_t fresh_after = 0;
    if (!agent_.values.empty()) {
      fresh_after = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        Clock::now().time_since_epoch())
                        .count() -
                    max_age_ns_;
    }
    return least_.pick(in.candidates, [&](std::uint32_t node) {
      return rate(in.nodes[node], in.load_factor(node), fresh_after);
    });
  }

 private:
  double rate(const Node& node, double load_factor, std::int64_t fresh_after) {
    variables_.load(node, load_factor);
    for (auto& variable : agent_.values) {
      const auto value = node.runtime->agent_value(variable.name, fresh_after);
      // Not reported (lately): after every node that has, and tied with the others that have not.
      if (!value) return std::numeric_limits<double>::infinity();
      variable.value = *value;
    }
    try {
      return parser_.Eval();
    } catch (const mu::ParserError&) {
      // A compiled expression does not fail on numbers (1/0 is inf, not an error); should it
      // ever, the node simply rates worst.
      return std::numeric_limits<double>::infinity();
    }
  }

  LoadVariables variables_;
  AgentVariables agent_;
  std::int64_t max_age_ns_ = 0;
  mu::Parser parser_;
  detail::LeastScore least_;
};

}  // namespace

std::unique_ptr<Algorithm> make_min_load(const AlgorithmParams& params) {
  return std::make_unique<MinLoad>(params.cluster);
}

std::string validate_min_load(const config::ClusterConfig& cluster) {
  LoadVariables variables;
  AgentVariables agent;
  mu::Parser parser;
  variables.bind(parser);
  if (cluster.agent) agent.allow_in(parser);
  return compile(parser, cluster.load_rating);
}

}  // namespace pb::balance
