// Convolutions: the chosen plans as text, and text given back (Convolutions::plans / use_plans,
// convolution.h), so that a resumed run computes with the algorithms of the run it continues.
#include <sstream>

#include "convolution_impl.h"

namespace moco::cuda {

using namespace conv_detail;

// The plan use_plans() gave for this shape and pass, if any, installed without a search. A plan this
// machine cannot run (another cuDNN, another GPU: the algorithm or graph engine is refused here) is dropped
// with a note on stderr, and the pass is searched as usual.
bool Convolutions::Impl::use_given_plan(Entry& e, int pass, bool frozen) {
  const Key key = key_of(e.shape, e.dtype, e.add);
  auto it = given.find(key);
  if (it == given.end() || !it->second[pass]) return false;
  const Given g = *it->second[pass];
  it->second[pass].reset();  // tried once: a refusal below falls back to the search for good
  auto refuse = [&](const std::string& why) {
    // the search starts from the math type the entry was made with
    if (e.dtype == DType::BF16) MOCO_CUDNN_CHECK(cudnnSetConvolutionMathType(e.conv[pass], CUDNN_TENSOR_OP_MATH));
    std::fprintf(stderr, "moco: the given cuDNN plan for %s of %s cannot be used here (%s); searching again%s\n",
                 pass_name(pass), shape_string(e.shape, e.dtype, e.add).c_str(), why.c_str(),
                 g.space_to_depth ? ", and choosing the stem's form again" : "");
    return false;
  };
  // fp32 keeps FMA math whatever the plan says (no TF32); bf16 runs the plan's math type
  if (e.dtype == DType::BF16) MOCO_CUDNN_CHECK(cudnnSetConvolutionMathType(e.conv[pass], g.math));
  Plan plan;
  plan.algo = g.algo;
  plan.math = e.dtype == DType::BF16 ? g.math : CUDNN_FMA_MATH;
  plan.given = true;
  plan.deterministic = g.deterministic;  // as the search that chose it found
  plan.space_to_depth = g.space_to_depth;  // choose_stem_form prepares the form
  if (const cudnnStatus_t st = workspace_for(e, pass, g.algo, &plan.bytes))
    return refuse("algorithm " + std::to_string(g.algo) + " (" + algo_name(pass, g.algo) + "): " +
                  cudnnGetErrorString(st));
  size_t bytes = plan.bytes;
  if (g.engine >= 0) {
    GraphConvCandidates found;
    try {
      found = graph_conv_candidates(handle, e.shape, e.dtype, pass, kMaxAlgoWorkspace, 1, g.engine, e.add);
    } catch (const Error& err) {
      return refuse(err.what());
    }
    for (const GraphConvPlan& c : found.plans)
      if (c.engine == g.engine && !plan.graph.plan) plan.graph = c;
    if (!plan.graph.plan) return refuse("graph engine " + std::to_string(g.engine) + " is not offered");
    bytes = std::max(bytes, plan.graph.workspace);
  }
  e.plan[pass] = plan;
  try {
    grow_workspace(bytes, frozen, e, pass);
  } catch (...) {
    forget(e, pass);
    throw;
  }
  e.plan[pass].found = true;
  return true;
}

std::string Convolutions::plans() const {
  // pass backward_data_add: backward data adding into dx; a trailing space_to_depth: the stem's form
  std::string out =
      "# cuDNN convolution plans: N Ci H W Co kh kw stride pad dtype pass legacy-algorithm math-type "
      "deterministic graph-engine (-1: none) [space_to_depth]\n";
  for (const Entry* e : impl_->order)
    for (int pass = 0; pass < kPasses; ++pass) {
      const Plan& p = e->plan[pass];
      if (!p.found) continue;
      const cpu::ConvShape& s = e->shape;
      char buf[256];
      std::snprintf(buf, sizeof buf, "%lld %lld %lld %lld %lld %lld %lld %lld %lld %s %s %d %d %d %lld%s\n",
                    (long long)s.n, (long long)s.ci, (long long)s.h, (long long)s.w, (long long)s.co,
                    (long long)s.kh, (long long)s.kw, (long long)s.stride, (long long)s.pad, dtype_name(e->dtype),
                    pass_name(pass, e->add), p.algo, (int)p.math, p.deterministic ? 1 : 0,
                    (long long)(p.graph.plan ? p.graph.engine : -1), p.space_to_depth ? " space_to_depth" : "");
      out += buf;
    }
  return out;
}

void Convolutions::use_plans(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream f(line);
    long long v[9];
    std::string dtype, pass;
    int algo = -1, math = -1, deterministic = -1;
    long long engine = -2;
    for (long long& x : v) f >> x;
    f >> dtype >> pass >> algo >> math >> deterministic >> engine;
    const bool fields = !f.fail();  // the fifteen above
    std::string form, rest;         // an optional stem form (stays empty at the end of the line), then nothing
    f >> form;
    const bool space_to_depth = form == "space_to_depth";
    const bool ok = fields && (form.empty() || space_to_depth) && !(f >> rest) &&
                    (dtype == "f32" || dtype == "bf16") && algo >= 0 &&
                    (math == CUDNN_DEFAULT_MATH || math == CUDNN_TENSOR_OP_MATH ||
                     math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION || math == CUDNN_FMA_MATH) &&
                    (deterministic == 0 || deterministic == 1) && engine >= -1;
    int p = -1;
    for (int i = 0; i < kPasses; ++i)
      if (pass == pass_name(i)) p = i;
    const bool add = pass == kAddingBackwardDataName;
    if (add) p = kBackwardData;
    MOCO_CHECK(ok && p >= 0, "convolution plans, line ", number, ": '", line,
               "' is not 'N Ci H W Co kh kw stride pad f32|bf16 forward|backward_data|backward_data_add|"
               "backward_filter algorithm math-type 0|1 graph-engine [space_to_depth]'");
    const DType dt = dtype == "f32" ? DType::F32 : DType::BF16;
    const cpu::ConvShape s{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
    check_args("use_plans", s, dt);
    MOCO_CHECK(!space_to_depth || ((p == kForward || p == kBackwardFilter) && !add && space_to_depth_fits(s)),
               "convolution plans, line ", number, ": '", line, "' asks for the space_to_depth form, which only the ",
               "forward and backward_filter of a stride-2 convolution with 1 to 4 input channels have");
    const Key key = key_of(s, dt, add);
    impl_->given[key][p] = Impl::Given{algo, (cudnnMathType_t)math, deterministic == 1, engine, space_to_depth};
  }
}

}  // namespace moco::cuda
