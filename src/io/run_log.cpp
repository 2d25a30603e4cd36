#include "moco/run_log.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "moco/checkpoint.h"
#include "moco/error.h"

namespace moco {

static std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if ((unsigned char)c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else {
      o += c;
    }
  }
  return o + "\"";
}

JsonRecord& JsonRecord::append(const JsonRecord& more) {
  fields_.insert(fields_.end(), more.fields_.begin(), more.fields_.end());
  return *this;
}

JsonRecord& JsonRecord::add(const std::string& key, double v) {
  char buf[32];
  if (std::isfinite(v))
    std::snprintf(buf, sizeof buf, "%.9g", v);
  else
    std::snprintf(buf, sizeof buf, "null");  // JSON has no NaN; the run stops on one anyway
  fields_.emplace_back(key, buf);
  return *this;
}
JsonRecord& JsonRecord::add(const std::string& key, float v) {
  if (!std::isfinite(v)) return add(key, (double)v);
  char buf[32];
  for (int digits = 6; digits <= 9; ++digits) {  // 9 significant digits always read back as the same float
    std::snprintf(buf, sizeof buf, "%.*g", digits, (double)v);
    if (std::strtof(buf, nullptr) == v) break;
  }
  fields_.emplace_back(key, buf);
  return *this;
}
JsonRecord& JsonRecord::add(const std::string& key, int64_t v) {
  fields_.emplace_back(key, std::to_string(v));
  return *this;
}
JsonRecord& JsonRecord::add(const std::string& key, bool v) {
  fields_.emplace_back(key, v ? "true" : "false");
  return *this;
}
JsonRecord& JsonRecord::add(const std::string& key, const std::string& v) {
  fields_.emplace_back(key, json_string(v));
  return *this;
}
std::string JsonRecord::str() const {
  std::string s = "{";
  for (size_t i = 0; i < fields_.size(); ++i) s += (i ? ", " : "") + json_string(fields_[i].first) + ": " + fields_[i].second;
  return s + "}";
}

// The "step" of a logged line, or -1 when it has none.
static int64_t step_of(const std::string& line) {
  const size_t k = line.find("\"step\": ");
  return k == std::string::npos ? -1 : std::strtoll(line.c_str() + k + 8, nullptr, 10);
}

MetricsLog::MetricsLog(const std::string& path, int64_t keep_until_step) {
  if (keep_until_step >= 0) {
    std::ifstream in(path);
    std::string kept;
    for (std::string line; std::getline(in, line);)
      if (step_of(line) <= keep_until_step) kept += line + "\n";
    write_file_atomically(path, kept);
  }
  f_ = std::fopen(path.c_str(), keep_until_step >= 0 ? "a" : "w");
  MOCO_CHECK(f_, "cannot write ", path, ": ", std::strerror(errno));
}

MetricsLog::MetricsLog(const std::string& path, AppendAll) {
  f_ = std::fopen(path.c_str(), "a");
  MOCO_CHECK(f_, "cannot append to ", path, ": ", std::strerror(errno));
}

MetricsLog::~MetricsLog() {
  if (f_) std::fclose(f_);
}

void MetricsLog::write(const JsonRecord& r) {
  std::fprintf(f_, "%s\n", r.str().c_str());
  std::fflush(f_);
}

Progress::Progress(int64_t total_steps, int64_t first_step, int every, int64_t images_per_step)
    : total_(total_steps), first_(first_step), images_per_step_(images_per_step), every_(every < 1 ? 1 : every),
      tty_(isatty(STDERR_FILENO)), start_(std::chrono::steady_clock::now()), last_time_(start_),
      last_step_(first_step) {}

bool Progress::prints_after(int64_t step_in_epoch, int every) { return (step_in_epoch - 1) % every == 0; }

std::string Progress::duration(double s) {
  char buf[32];
  const long t = std::lround(std::max(0.0, s));
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

std::string Progress::update(int64_t step, int64_t epoch, int64_t epochs, int64_t step_in_epoch,
                             int64_t steps_per_epoch, double loss, double acc1, double acc5, double data_seconds) {
  data_seconds_ += data_seconds;
  const bool last = step >= total_;
  if (!tty_ && !prints_after(step_in_epoch, every_) && !last) return "";
  const auto now = std::chrono::steady_clock::now();
  const double interval = std::chrono::duration<double>(now - last_time_).count();
  const double img_per_s = interval > 0 ? (double)((step - last_step_) * images_per_step_) / interval : 0;
  const double data_share = interval > 0 ? std::min(1.0, data_seconds_ / interval) : 0;
  last_time_ = now;
  last_step_ = step;
  data_seconds_ = 0;
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double done = (double)(step - first_);
  const double eta = done > 0 ? elapsed / done * (double)(total_ - step) : 0;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "epoch %lld/%lld  step %lld/%lld  loss %.4f  acc@1 %5.1f  acc@5 %5.1f  %.1f img/s  data %.0f%%  eta %s",
                (long long)epoch + 1, (long long)epochs, (long long)step_in_epoch, (long long)steps_per_epoch, loss,
                acc1, acc5, img_per_s, 100.0 * data_share, duration(eta).c_str());
  std::fprintf(stderr, tty_ ? "\r%s\033[K" : "%s\n", buf);
  std::fflush(stderr);
  return buf;
}

void Progress::finish() {
  if (tty_) std::fprintf(stderr, "\n");
}

}  // namespace moco
