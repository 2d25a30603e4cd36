// Convolutions: the graph API timed against the legacy algorithm on a pass's first call (MOCO_CONV_API,
// convolution.h), and the mode's name and parsing.
#include <cstdlib>
#include <cstring>

#include "convolution_impl.h"

namespace moco::cuda {

using namespace conv_detail;

// Builds the graph API's qualifying plans for the pass and times them and the legacy algorithm found just
// before, each the same way, on the caller's buffers (their output is overwritten; the caller computes it
// again). Records the times and, as the mode asks, the graph plan to use. In auto mode anything the graph
// API refuses only leaves a note; in graph mode it is an error, except for a data gradient added to dx: that
// asks the engines for beta = 1, which cuDNN's documentation does not promise every engine takes, so there
// graph mode keeps the legacy algorithm with the note and describe() says so.
void Convolutions::Impl::consider_graph(Entry& e, int pass, const void* in0, const void* in1, void* out,
                                        bool frozen) {
  Plan& plan = e.plan[pass];
  const bool forced = api == ConvApi::kGraph;  // the graph plan whenever one runs, untimed against legacy
  const bool required = forced && !e.add;     // and no graph plan is an error
  if (!graph_conv_aligned(in0, in1, out)) {
    MOCO_CHECK(!required, "Convolutions: MOCO_CONV_API=graph, but the first ", pass_name(pass), " call of ",
               shape_string(e.shape, e.dtype, e.add), " has a pointer that is not ", kGraphConvAlignment,
               "-byte aligned, so no graph plan can be timed on it");
    plan.graph_note = "not timed: unaligned buffers";
    return;
  }
  // A frozen workspace cannot grow, so only plans that fit it are candidates.
  const size_t limit = frozen ? std::min(workspace_bytes, kMaxAlgoWorkspace) : kMaxAlgoWorkspace;
  GraphConvCandidates found;
  try {
    found = graph_conv_candidates(handle, e.shape, e.dtype, pass, limit, kMaxGraphPlans, -1, e.add);
  } catch (const Error& err) {
    if (required) throw;
    plan.graph_note = std::string("graph API refused: ") + err.what();
    return;
  }
  MOCO_CHECK(!found.plans.empty() || !required, "Convolutions: MOCO_CONV_API=graph, but no cuDNN graph-API engine "
             "qualifies for ", pass_name(pass), " of ", shape_string(e.shape, e.dtype, e.add),
             frozen ? " within the workspace, frozen at " + std::to_string(workspace_bytes) + " bytes" : std::string(),
             ":", found.dropped);
  if (found.plans.empty()) {
    plan.graph_note = "no graph engine qualified";
    return;
  }

  size_t most = workspace_bytes;  // the timing runs' workspace: the persistent one, or scratch when larger
  for (const GraphConvPlan& g : found.plans) most = std::max(most, g.workspace);
  SearchScratch scratch;
  void* ws = workspace;
  if (most > workspace_bytes) {
    if (!scratch.take(most)) {
      MOCO_CHECK(!required, "Convolutions: MOCO_CONV_API=graph, but the ", most, "-byte workspace to time the graph "
                 "plans of ", pass_name(pass), " of ", shape_string(e.shape, e.dtype, e.add), " cannot be allocated");
      plan.graph_note = "not timed: no memory for the graph plans' workspace";
      return;
    }
    ws = scratch.p;
  }
  // graph mode needs no legacy time, nor any time when only one plan qualifies
  if (!forced) plan.legacy_timed_ms = time_ms([&] { run_legacy(e, pass, in0, in1, out, ws, most); });
  int best = 0;
  float best_ms = -1;
  try {
    if (!forced || found.plans.size() > 1)
      for (size_t i = 0; i < found.plans.size(); ++i) {
        const GraphConvPlan& g = found.plans[i];
        const float ms = time_ms([&] { run_graph_conv(handle, g, pass, in0, in1, out, ws); });
        if (best_ms < 0 || ms < best_ms) best = (int)i, best_ms = ms;
      }
  } catch (const Error& err) {  // auto mode: a graph engine that fails to run leaves the legacy plan in place
    if (required) throw;
    plan.graph_note = std::string("graph run failed: ") + err.what();
    return;
  }
  scratch.release(stream);  // after the timing runs
  plan.best_graph_engine = found.plans[(size_t)best].engine;
  plan.graph_timed_ms = best_ms;
  // ties go to the graph plan, whose calls cost the host less (convolution.h)
  const bool take = forced || best_ms * (1.0 - kGraphMargin) <= plan.legacy_timed_ms;
  if (!take) return;
  try {
    grow_workspace(std::max(plan.bytes, found.plans[(size_t)best].workspace), frozen, e, pass);
  } catch (const Error& err) {  // auto mode: no memory for the faster plan's workspace keeps the legacy one
    if (required) throw;
    plan.graph_note = std::string("not taken: ") + err.what();
    plan.best_graph_engine = -1;
    return;
  }
  plan.graph = found.plans[(size_t)best];
}

ConvApi conv_api_from_env() {
  const char* v = std::getenv("MOCO_CONV_API");
  if (!v || !*v || std::strcmp(v, "auto") == 0) return ConvApi::kAuto;
  if (std::strcmp(v, "legacy") == 0) return ConvApi::kLegacy;
  if (std::strcmp(v, "graph") == 0) return ConvApi::kGraph;
  ::moco::fail("MOCO_CONV_API=", v, " is not a cuDNN API choice (expected legacy, graph or auto)");
}

const char* conv_api_name(ConvApi api) {
  return api == ConvApi::kGraph ? "graph" : api == ConvApi::kAuto ? "auto" : "legacy";
}

}  // namespace moco::cuda
