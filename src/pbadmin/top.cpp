#include "protobalance/pbadmin/top.hpp"

#include <poll.h>
#include <unistd.h>

#include <boost/beast/http/verb.hpp>
#include <charconv>
#include <cmath>
#include <memory>
#include <sstream>
#include <string_view>
#include <thread>
#include <variant>

#include "protobalance/config/duration.hpp"
#include "protobalance/pbadmin/daemon_client.hpp"

namespace pb::pbadmin {
namespace {

namespace http = boost::beast::http;
namespace json = boost::json;

// Fetches one status document. On failure returns the exit code; the reason went to ctx.err.
std::variant<TopSample, int> fetch_top_sample(const Context& ctx) {
  auto outcome = request_object(ctx, http::verb::get, "/v1/status");
  if (const int* code = std::get_if<int>(&outcome)) return *code;
  return TopSample{std::move(std::get<json::object>(outcome)), std::chrono::steady_clock::now()};
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

}  // namespace

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

}  // namespace pb::pbadmin
