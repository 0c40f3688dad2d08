// The full-screen view of `pbadmin top`, drawn with ncurses. Only pbadmin links it: the data
// comes ready-made from make_top_frame() / layout_top() (pbadmin/top_view.hpp).
#include "top_screen.hpp"

#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "protobalance/config/duration.hpp"

// Last: curses.h defines macros (timeout, erase, refresh...) that clash with names in Asio.
#include <curses.h>

namespace pb::pbadmin {
namespace {


constexpr short kGreen = 1;
constexpr short kYellow = 2;
constexpr short kRed = 3;

class CursesScreen final : public TopScreen {
 public:
  explicit CursesScreen(std::chrono::milliseconds interval)
      : interval_(interval), keys_(::isatty(STDIN_FILENO) == 1) {
    // newterm rather than initscr: a terminal ncurses does not know is an exception here (the
    // caller falls back to plain text), not an exit of the process.
    screen_ = newterm(nullptr, stdout, stdin);
    if (screen_ == nullptr) {
      const char* term = std::getenv("TERM");
      throw std::runtime_error(fmt::format("cannot drive the terminal (TERM={})",
                                           term == nullptr ? "unset" : term));
    }
    set_term(screen_);
    if (keys_) {
      cbreak();
      noecho();
      keypad(stdscr, TRUE);
    }
    curs_set(0);
    if (has_colors()) {
      start_color();
      const short background = use_default_colors() == OK ? -1 : COLOR_BLACK;
      init_pair(kGreen, COLOR_GREEN, background);
      init_pair(kYellow, COLOR_YELLOW, background);
      init_pair(kRed, COLOR_RED, background);
      colours_ = true;
    }
  }

  ~CursesScreen() override {
    endwin();
    delscreen(screen_);
  }

  CursesScreen(const CursesScreen&) = delete;
  CursesScreen& operator=(const CursesScreen&) = delete;

  void draw(const TopFrame& frame, const std::string& message) override {
    erase();
    int row = 0;
    line(row++, top_summary(frame) + "   every " + config::format_duration(interval_) +
                    (keys_ ? ", q quits" : ""),
         A_BOLD);
    if (!message.empty()) line(row, message, A_BOLD | colour(kRed));
    row += 2;
    const TopText text = layout_top(frame);
    for (std::size_t i = 0; i < text.listener_lines.size(); ++i) {
      line(row++, text.listener_lines[i], i == 0 ? A_REVERSE : A_NORMAL);
    }
    ++row;
    for (std::size_t i = 0; i < text.node_lines.size(); ++i) {
      if (i == 0) {
        line(row++, text.node_lines[i], A_REVERSE);
        continue;
      }
      const TopHealth health = frame.nodes[i - 1].health;
      line(row++, text.node_lines[i],
           colour(health == TopHealth::good      ? kGreen
                  : health == TopHealth::warning ? kYellow
                                                 : kRed));
    }
    refresh();
  }

  bool wait_for_quit(std::chrono::milliseconds timeout) override {
    if (!keys_) {
      std::this_thread::sleep_for(timeout);
      return false;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeout(static_cast<int>(left.count()));
      const int key = getch();
      if (key == 'q' || key == 'Q') return true;
      // A resized terminal is redrawn at once, with a fresh sample.
      if (key == KEY_RESIZE) return false;
    }
  }

 private:
  chtype colour(short pair) const { return colours_ ? static_cast<chtype>(COLOR_PAIR(pair)) : 0; }

  // One line at `row`, cut at the screen's width; rows below the screen are skipped.
  static void line(int row, const std::string& text, chtype attributes) {
    if (row >= LINES) return;
    attron(static_cast<int>(attributes));
    mvaddnstr(row, 0, text.c_str(), COLS);
    attroff(static_cast<int>(attributes));
  }

  std::chrono::milliseconds interval_;
  bool keys_;
  bool colours_ = false;
  SCREEN* screen_ = nullptr;
};

}  // namespace

std::unique_ptr<TopScreen> make_top_screen(std::chrono::milliseconds interval) {
  return std::make_unique<CursesScreen>(interval);
}

}  // namespace pb::pbadmin
