// A checkpoint written when Param tensors started at multiples of 4 elements (tests/fixtures/align4, made by
// `moco train --width 1 -b 16 --moco-k 32 --moco-dim 8 --max-steps 2` at that version, with both encoders
// exported by `moco export --head` of the same version) still loads: every tensor of both encoders equals the
// export written by the version that wrote the checkpoint.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "moco/checkpoint_model.h"
#include "moco/safetensors.h"

using namespace moco;

namespace {

void expect_encoder_equals_export(Encoder& enc, const std::string& file) {
  const SafeTensorsFile st = read_safetensors(file);
  int compared = 0;
  for (const RegistryEntry& e : enc.registry().entries()) {
    const SafeTensor* t = st.find(e.name);
    ASSERT_NE(t, nullptr) << e.name << " missing from " << file;
    ASSERT_EQ(t->shape, e.shape) << e.name;
    const Tensor mine = enc.tensor(e.name);
    ASSERT_EQ(t->bytes.size(), mine.nbytes()) << e.name;
    EXPECT_EQ(std::memcmp(t->bytes.data(), mine.raw(), mine.nbytes()), 0) << e.name << " differs from " << file;
    ++compared;
  }
  EXPECT_EQ(compared, (int)st.tensors.size()) << "the export holds tensors the model does not have";
}

}  // namespace

TEST(CheckpointLayout, AnOlderParameterAlignmentLoadsIntoTheSameTensors) {
  const std::string dir = std::string(MOCO_FIXTURE_DIR) + "/align4";
  CheckpointModel model(dir + "/checkpoint.mocockpt", /*random_init=*/false);
  int64_t old_total = 0;
  model.moco().encoder_q().registry().param_offsets(4, &old_total);
  ASSERT_NE(old_total, model.moco().encoder_q().registry().size(Slot::Param))
      << "the fixture would not exercise the conversion: its layout equals today's";
  expect_encoder_equals_export(model.moco().encoder_q(), dir + "/query.safetensors");
  expect_encoder_equals_export(model.moco().encoder_k(), dir + "/key.safetensors");
}
