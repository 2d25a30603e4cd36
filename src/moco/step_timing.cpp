#include "moco/step_timing.h"

#include <algorithm>
#include <chrono>
#include <cstdio>

namespace moco {

static double median(std::vector<double> v) {
  MOCO_CHECK(!v.empty(), "no timed steps");
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double StepTiming::median_step_ms() const { return median(step_ms); }
double StepTiming::median_phase_ms(int phase) const { return median(phase_ms[(size_t)phase]); }
double StepTiming::median_host_issue_ms() const { return host_issue_ms.empty() ? 0.0 : median(host_issue_ms); }

StepTiming time_steps(int warmup, int steps, const std::function<StepStats()>& step,
                      const std::function<void()>& after_warmup) {
  MOCO_CHECK(steps >= 1, "--steps must be at least 1, got ", steps);
  StepTiming t;
  t.phase_ms.resize(kPhases);
  for (int i = 0; i < warmup + steps; ++i) {
    if (i == warmup && after_warmup) after_warmup();
    const auto t0 = std::chrono::steady_clock::now();
    const StepStats st = step();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (i < warmup) continue;
    t.step_ms.push_back(ms);
    for (int p = 0; p < kPhases; ++p) t.phase_ms[(size_t)p].push_back(st.ms[p]);
    t.activation_bytes = std::max(t.activation_bytes, st.activation_bytes);
    if (st.host_issue_ms > 0) t.host_issue_ms.push_back(st.host_issue_ms);
  }
  return t;
}

void print_step_timing(const StepTiming& t, int64_t batch) {
  const double step_ms = t.median_step_ms();
  std::printf("step_ms_median %.2f  step_ms_min %.2f  img_per_s %.1f  (%zu timed steps)\n", step_ms,
              *std::min_element(t.step_ms.begin(), t.step_ms.end()), (double)batch * 1000.0 / step_ms,
              t.step_ms.size());
  std::printf("phase ms (median):");
  for (int p = 0; p < kPhases; ++p) std::printf("  %s %.2f", phase_name(p), t.median_phase_ms(p));
  std::printf("\n");
  if (!t.host_issue_ms.empty()) {
    // The host issues launches ahead of the device; if it needs as long as the device takes to run them, the
    // device waited for it (launch-bound) and faster kernels would not shorten the step.
    // (steps) the device's time for the step up to backward's end: the first five phases, in whatever order the
    // step ran them (the GPU step runs the key side first)
    std::vector<double> issued(t.step_ms.size(), 0.0);
    for (int p = 0; p <= kBackward; ++p)
      for (size_t i = 0; i < issued.size(); ++i) issued[i] += t.phase_ms[(size_t)p][i];
    const double host = t.median_host_issue_ms(), device = median(issued);
    std::printf("host issue ms (median) %.2f up to backward's end, which took the device %.2f: %s\n", host,
                device, host >= 0.9 * device ? "launch-bound (the device waits for the host)" : "device-bound");
  }
}

}  // namespace moco

namespace moco {

void add_step_timing(JsonRecord& r, const StepTiming& t, int64_t batch) {
  const double step_ms = t.median_step_ms();
  r.add("img_per_s", (double)batch * 1000.0 / step_ms)
      .add("step_ms", step_ms)
      .add("step_ms_min", *std::min_element(t.step_ms.begin(), t.step_ms.end()))
      .add("timed_steps", (int64_t)t.step_ms.size());
  for (int p = 0; p < kPhases; ++p) r.add(std::string(phase_name(p)) + "_ms", t.median_phase_ms(p));
  if (!t.host_issue_ms.empty()) r.add("host_issue_ms", t.median_host_issue_ms());
}

}  // namespace moco
