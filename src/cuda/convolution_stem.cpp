// Convolutions: the stem's space-to-depth form (StemForm, convolution.h). On the first forward or filter
// gradient call of a shape that has one, the form is decided (as given back, as MOCO_STEM_FORM says, or by
// timing both forms on the caller's buffers); later calls only run it.
//
// The form runs in the persistent workspace, laid out as
//   [the stride-1 plan's own workspace | z (N, Hz, Wz, 16) | w2 or dw2 (Co, kh2, kw2, 16)]
// each part starting 256-byte aligned (the graph plans need 16). The first call searches the stride-1 shape's
// plan on scratch copies instead, because that search may grow, and so move, the workspace; auto mode times
// the form in scratch when the workspace is smaller than it needs, and grows the workspace only for a form it
// keeps.
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "convolution_impl.h"
#include "stem_space_to_depth.cuh"

namespace moco::cuda {

using namespace conv_detail;

namespace {

size_t round_up(size_t bytes) { return (bytes + 255) / 256 * 256; }

// Where the form's parts sit in the workspace, for the stride-1 entry `se` and a pass.
struct Region {
  size_t head = 0;       // the stride-1 plan's workspace
  size_t z_bytes = 0;    // the transformed input
  size_t aux_bytes = 0;  // the transformed filter (forward) or its gradient (filter gradient)
  size_t total() const { return head + z_bytes + aux_bytes; }
};
Region region_of(const Entry& se, int pass) {
  const Plan& p = se.plan[pass];
  const cpu::ConvShape& z = se.shape;
  const size_t elem = dtype_size(se.dtype);
  Region r;
  r.head = round_up(std::max(p.bytes, p.graph.plan ? p.graph.workspace : size_t(0)));
  r.z_bytes = round_up((size_t)(z.n * z.h * z.w * z.ci) * elem);
  r.aux_bytes = round_up((size_t)(z.co * z.kh * z.kw * z.ci) * elem);
  return r;
}

void transform_input(const Entry& e, const cpu::ConvShape& zs, const void* x, void* z, cudaStream_t stream) {
  const cpu::ConvShape& s = e.shape;
  // the rows and columns the direct convolution reads: up to the last output's last tap
  const int64_t h_read = std::clamp<int64_t>((s.ho() - 1) * s.stride + s.kh - s.pad, 0, s.h),
                w_read = std::clamp<int64_t>((s.wo() - 1) * s.stride + s.kw - s.pad, 0, s.w);
  kernels::space_to_depth_input(s.n, s.h, s.w, s.ci, s.pad, h_read, w_read, zs.h, zs.w, dtype_size(e.dtype), x, z,
                                stream);
}

}  // namespace

bool space_to_depth_fits(const cpu::ConvShape& s) {
  return s.stride == 2 && s.ci >= 1 && s.ci <= kernels::kSpaceToDepthMaxCi && (s.kh > 1 || s.kw > 1);
}

cpu::ConvShape space_to_depth_shape(const cpu::ConvShape& s) {
  const int64_t kh2 = (s.kh + 1) / 2, kw2 = (s.kw + 1) / 2;
  return cpu::ConvShape{s.n, kernels::kSpaceToDepthChannels, s.ho() + kh2 - 1, s.wo() + kw2 - 1, s.co, kh2, kw2,
                        1, 0};
}

StemForm stem_form_from_env() {
  const char* v = std::getenv("MOCO_STEM_FORM");
  if (!v || !*v || std::strcmp(v, "auto") == 0) return StemForm::kAuto;
  if (std::strcmp(v, "direct") == 0) return StemForm::kDirect;
  if (std::strcmp(v, "space_to_depth") == 0) return StemForm::kSpaceToDepth;
  ::moco::fail("MOCO_STEM_FORM=", v, " is not a stem form (expected direct, space_to_depth or auto)");
}

const char* stem_form_name(StemForm form) {
  return form == StemForm::kSpaceToDepth ? "space_to_depth" : form == StemForm::kAuto ? "auto" : "direct";
}

Entry& Convolutions::Impl::prepare_space_to_depth(const Entry& e, int pass, const void* in0, const void* in1,
                                                  void* out, bool frozen) {
  const cpu::ConvShape zs = space_to_depth_shape(e.shape);
  check_args("space-to-depth form", zs, e.dtype);
  Entry& se = entry(zs, e.dtype);
  if (se.plan[pass].found) return se;
  Region r = region_of(se, pass);
  SearchScratch scratch;  // z, then w2 or dw2
  MOCO_CHECK(scratch.take(r.z_bytes + r.aux_bytes), "Convolutions: no device memory for the ", r.z_bytes + r.aux_bytes,
             "-byte space-to-depth copies that searching ", shape_string(zs, e.dtype), " needs; free memory or lower ",
             "the batch size");
  char* z = static_cast<char*>(scratch.p);
  char* aux = z + r.z_bytes;
  transform_input(e, zs, in0, z, stream);
  const cpu::ConvShape& s = e.shape;
  if (pass == kForward) {
    kernels::space_to_depth_weight(s.co, s.kh, s.kw, s.ci, dtype_size(e.dtype), in1, aux, stream);
    find(se, kForward, z, aux, out, frozen);
  } else {
    find(se, kBackwardFilter, z, in1, aux, frozen);
  }
  scratch.release(stream);  // after the search's kernels
  return se;
}

const Entry& Convolutions::Impl::space_to_depth_entry(const Entry& e) const {
  return *entries.at(key_of(space_to_depth_shape(e.shape), e.dtype, false));
}

size_t Convolutions::Impl::space_to_depth_bytes(const Entry& e, int pass) const {
  return region_of(space_to_depth_entry(e), pass).total();
}

void Convolutions::Impl::run_space_to_depth(const Entry& e, int pass, const void* in0, const void* in1, void* out,
                                            void* base) {
  const Entry& se = space_to_depth_entry(e);
  const Region r = region_of(se, pass);
  if (!base) {
    MOCO_CHECK(r.total() <= workspace_bytes, "Convolutions: the space-to-depth form of ", pass_name(pass), " of ",
               shape_string(e.shape, e.dtype), " needs ", r.total(), " bytes of workspace, but it holds ",
               workspace_bytes);
    base = workspace;
  }
  char* ws = static_cast<char*>(base);
  char* z = ws + r.head;
  char* aux = z + r.z_bytes;
  transform_input(e, se.shape, in0, z, stream);
  const cpu::ConvShape& s = e.shape;
  const size_t elem = dtype_size(e.dtype);
  if (pass == kForward) {
    kernels::space_to_depth_weight(s.co, s.kh, s.kw, s.ci, elem, in1, aux, stream);
    run(se, kForward, z, aux, out, ws, r.head);
  } else {
    run(se, kBackwardFilter, z, in1, aux, ws, r.head);
    kernels::space_to_depth_weight_grad(s.co, s.kh, s.kw, s.ci, elem, aux, out, stream);
  }
}

void Convolutions::Impl::choose_stem_form(Entry& e, int pass, const void* in0, const void* in1, void* out,
                                          bool frozen) {
  if (pass == kBackwardData || !space_to_depth_fits(e.shape)) return;
  Plan& plan = e.plan[pass];
  // given plans say the form (use_given_plan set it); otherwise the mode, and in auto mode the clock
  const bool forced = plan.given || stem == StemForm::kSpaceToDepth;
  if (plan.given ? !plan.space_to_depth : stem == StemForm::kDirect) return;
  plan.space_to_depth = false;
  if (forced) {
    // a form that was asked for is an error when it cannot be had, and leaves no plan behind to run quietly
    // in its place
    try {
      prepare_space_to_depth(e, pass, in0, in1, out, frozen);
      grow_workspace(space_to_depth_bytes(e, pass), frozen, e, pass);
    } catch (...) {
      forget(e, pass);
      throw;
    }
    plan.space_to_depth = true;
    return;
  }
  // auto: both forms timed on the caller's buffers; the space-to-depth one in the workspace when it fits there,
  // else in scratch, so that the workspace grows only for a form that is kept. Anything that fails leaves the
  // direct form, with the reason for the report.
  try {
    plan.direct_timed_ms = time_ms([&] { run(e, pass, in0, in1, out); });
    // the stride-1 form's search chooses its plan without growing the workspace for it: the timing below runs
    // in scratch where the workspace is too small, and the growth comes only with the form's being kept
    {
      struct Deferred {  // growth deferred for this scope, however it is left
        bool& flag;
        ~Deferred() { flag = false; }
      } deferred{defer_growth = true};
      prepare_space_to_depth(e, pass, in0, in1, out, frozen);
    }
    const size_t bytes = space_to_depth_bytes(e, pass);
    SearchScratch scratch;
    void* base = nullptr;  // the workspace
    if (bytes > workspace_bytes) {
      MOCO_CHECK(scratch.take(bytes), "no device memory for its ", bytes, "-byte workspace");
      base = scratch.p;
    }
    plan.space_to_depth_timed_ms = time_ms([&] { run_space_to_depth(e, pass, in0, in1, out, base); });
    scratch.release(stream);  // after the timing runs
  } catch (const Error& err) {
    plan.stem_note = std::string("space_to_depth not timed: ") + err.what();
    return;
  }
  // ties go to the direct form: one convolution call, no transforms
  if (plan.space_to_depth_timed_ms * (1.0 + kStemMargin) >= plan.direct_timed_ms) return;
  try {
    grow_workspace(space_to_depth_bytes(e, pass), frozen, e, pass);
  } catch (const Error& err) {
    plan.stem_note = std::string("space_to_depth not taken: ") + err.what();
    return;
  }
  plan.space_to_depth = true;
}

}  // namespace moco::cuda
