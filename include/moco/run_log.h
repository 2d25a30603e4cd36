// What a run tells its user: one JSON object per logged step in DIR/metrics.jsonl (machine-readable), and
// a progress line on the terminal (epoch, step/N, loss, Acc@1, Acc@5, img/s, ETA).
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace moco {

// One JSON object, fields in insertion order.
class JsonRecord {
 public:
  JsonRecord& add(const std::string& key, double v);
  // A float with the fewest digits that read back as the same float: 0.06f is "0.06", where its double
  // would print as 0.0599999987 (the step's loss, accuracies and learning rate are floats).
  JsonRecord& add(const std::string& key, float v);
  JsonRecord& add(const std::string& key, int64_t v);
  JsonRecord& add(const std::string& key, int v) { return add(key, (int64_t)v); }
  JsonRecord& add(const std::string& key, const std::string& v);
  JsonRecord& add(const std::string& key, const char* v) { return add(key, std::string(v)); }
  JsonRecord& add(const std::string& key, bool v);  // true / false
  JsonRecord& append(const JsonRecord& more);        // its fields after these, in its order
  std::string str() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;  // key, JSON-encoded value
};

class MetricsLog {
 public:
  // Opens `path` for a run: a new run (keep_until_step < 0) starts it empty; a resume (keep_until_step >= 0)
  // keeps its lines up to that step and appends. The lines whose "step" is larger are dropped: an
  // interrupted run may have logged steps after its last checkpoint, and they are about to be run again.
  MetricsLog(const std::string& path, int64_t keep_until_step);
  // Opens `path` to append to whatever it holds (`moco bench --jsonl`: records of several calls collect).
  struct AppendAll {};
  MetricsLog(const std::string& path, AppendAll);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  void write(const JsonRecord& r);  // one line, flushed, so a killed run loses nothing already logged

 private:
  std::FILE* f_ = nullptr;
};

// The live progress line. On a terminal it is redrawn in place every step; otherwise (a file, CI) a line is
// printed where the authors' main_moco.py prints one (`i % print_freq == 0`, i counting an epoch's steps from
// 0: after the epoch's 1st, (every+1)-th, (2 every+1)-th ... step), and after the run's last step.
class Progress {
 public:
  Progress(int64_t total_steps, int64_t first_step, int every, int64_t images_per_step);
  // Returns the line it printed (empty when it printed nothing). img/s is the mean since the previous line:
  // one step's rate jumps with the loader and the OS, the mean over the printed interval does not.
  // data_seconds: how long this step waited for the loader; the line shows that share of the interval's
  // time ("data 40%": the loader, not the step, sets the pace; give it more --workers).
  std::string update(int64_t step, int64_t epoch, int64_t epochs, int64_t step_in_epoch, int64_t steps_per_epoch,
                     double loss, double acc1, double acc5, double data_seconds = 0);
  void finish();  // ends a redrawn line
  static std::string duration(double seconds);  // "1h02m", "3m05s", "12s"
  // Whether the step numbered step_in_epoch (from 1) of its epoch gets a line when not on a terminal.
  static bool prints_after(int64_t step_in_epoch, int every);

 private:
  int64_t total_, first_, images_per_step_;
  int every_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_time_;
  int64_t last_step_;
  double data_seconds_ = 0;  // waited for the loader since the last line
};

}  // namespace moco
