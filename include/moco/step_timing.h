// Timing whole MoCo steps for `moco bench`, the same way on every device: warm-up steps first (untimed),
// then the median wall time of a step and the median of each phase's time, printed as the lines the
// benchmark scripts read (bench/cpu_step_vs_torch.sh, tools/device-run.sh).
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "moco/moco.h"
#include "moco/run_log.h"

namespace moco {

struct StepTiming {
  std::vector<double> step_ms;                 // (steps) wall time of each timed step
  std::vector<std::vector<double>> phase_ms;   // (kPhases, steps) as the step reported them
  int64_t activation_bytes = 0;                // the most any step saved for backward
  std::vector<double> host_issue_ms;           // (steps) StepStats::host_issue_ms (GPU steps; else empty)
  double median_step_ms() const;
  double median_phase_ms(int phase) const;
  double median_host_issue_ms() const;  // 0 when the step reports none (the CPU's)
};

// Runs warmup + steps calls of `step`; `after_warmup` runs once between the two (the GPU freezes its memory
// there).
StepTiming time_steps(int warmup, int steps, const std::function<StepStats()>& step,
                      const std::function<void()>& after_warmup = {});

// "step_ms_median ...  img_per_s ..." and "phase ms (median): ..." for `batch` images per step.
void print_step_timing(const StepTiming& t, int64_t batch);

// The same numbers as fields of `moco bench`'s JSON record: img_per_s, step_ms (median), step_ms_min,
// timed_steps, <phase>_ms (median) for each phase, and host_issue_ms where the step reports it.
void add_step_timing(JsonRecord& r, const StepTiming& t, int64_t batch);

}  // namespace moco
