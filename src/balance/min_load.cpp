// Minimum load: the operator writes the load rating of a node as an expression (muparser) over
// its live counters, and the candidate with the lowest rating wins. The default,
// "connections / load_factor", is least connections; "connections * 2 + failures" or
// "latency_ms * connections" shape the choice without a new algorithm.
//
// Each worker has its own compiled parser (muparser is not thread-safe); the variables are bound
// to members of that instance once, and a pick only stores numbers and evaluates bytecode, so it
// does not allocate.

#include <cstdint>
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

  void load(const Node& node) {
    const NodeRuntime& rt = *node.runtime;
    connections = static_cast<double>(rt.active.load(std::memory_order_relaxed));
    load_factor = node.load_factor;
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
    text += std::string("; the variables are ") + kVariableNames;
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

class MinLoad final : public Algorithm {
 public:
  MinLoad(std::size_t node_count, const std::string& expression) : least_(node_count) {
    variables_.bind(parser_);
    if (auto error = compile(parser_, expression); !error.empty()) {
      throw std::invalid_argument(error);
    }
  }

  std::uint32_t pick(const PickInput& in) override {
    return least_.pick(in.candidates, [&](std::uint32_t node) { return rate(in.nodes[node]); });
  }

 private:
  double rate(const Node& node) {
    variables_.load(node);
    try {
      return parser_.Eval();
    } catch (const mu::ParserError&) {
      // A compiled expression does not fail on numbers (1/0 is inf, not an error); should it
      // ever, the node simply rates worst.
      return std::numeric_limits<double>::infinity();
    }
  }

  LoadVariables variables_;
  mu::Parser parser_;
  detail::LeastScore least_;
};

}  // namespace

std::unique_ptr<Algorithm> make_min_load(const AlgorithmParams& params) {
  return std::make_unique<MinLoad>(params.cluster.nodes.size(), params.cluster.load_rating);
}

std::string validate_min_load(const config::ClusterConfig& cluster) {
  LoadVariables variables;
  mu::Parser parser;
  variables.bind(parser);
  return compile(parser, cluster.load_rating);
}

}  // namespace pb::balance
