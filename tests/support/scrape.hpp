#pragma once

// Reading the daemon's Prometheus exporter from a test: a plain HTTP GET, one parsed scrape,
// and polling with a deadline.

#include <chrono>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "support/client.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"

namespace pb::test {

// A plain HTTP/1.1 GET over a socket; returns the body of a 200 response, or nullopt.
inline std::optional<std::string> http_get(const std::string& address, const std::string& path) {
  Client client(address, std::chrono::seconds(5));
  if (!client.connected()) return std::nullopt;
  if (!client.send_all("GET " + path + " HTTP/1.1\r\nHost: " + address +
                       "\r\nConnection: close\r\n\r\n")) {
    return std::nullopt;
  }
  const std::string response = client.recv_all(in(std::chrono::seconds(10)));
  if (response.rfind("HTTP/1.1 200", 0) != 0) return std::nullopt;
  const auto body = response.find("\r\n\r\n");
  if (body == std::string::npos) return std::nullopt;
  return response.substr(body + 4);
}

// One scrape: every sample by its series ("name{labels}" exactly as exported) and the family
// names from the "# TYPE" lines.
struct Scrape {
  std::string text;
  std::map<std::string, double> samples;
  std::set<std::string> families;

  explicit Scrape(std::string body) : text(std::move(body)) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("# TYPE ", 0) == 0) {
        families.insert(line.substr(7, line.find(' ', 7) - 7));
      } else if (!line.empty() && line[0] != '#') {
        const auto space = line.rfind(' ');
        samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
      }
    }
  }

  // The value of a series, or -1 when it is absent (every value here is >= 0).
  double operator()(const std::string& series) const {
    const auto it = samples.find(series);
    return it == samples.end() ? -1 : it->second;
  }
};

// Waits for the daemon's "metrics: serving http://ADDR/metrics" line; returns ADDR.
inline std::string metrics_address(Balancer& balancer) {
  const auto match = balancer.process().wait_for(
      std::regex(R"(metrics: serving http://(\S+)/metrics)"), in(std::chrono::seconds(5)));
  return match ? (*match)[1] : "";
}

}  // namespace pb::test
