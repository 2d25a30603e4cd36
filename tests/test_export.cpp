// Encoder export/import through safetensors: torchvision names and counts (SPEC 6), dtypes, a bit-exact
// round trip, and import errors that name the key and both shapes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <tuple>

#include "moco/export.h"
#include "moco/pretrained.h"
#include "moco/rng.h"
#include "moco/safetensors.h"
#include "error_text.h"
#include "temp_dir.h"

using namespace moco;
using moco::test::TempDir;

namespace {

ResNetConfig tiny_resnet18(Head head, int width = 4) {
  ResNetConfig cfg;
  cfg.depth = 18;
  cfg.small_stem = true;
  cfg.width = width;
  cfg.head = head;
  cfg.out_dim = 8;
  return cfg;
}

// Nonzero everywhere it matters: init, then running statistics and counters that init leaves at 0/1.
void fill_distinct(Encoder& enc, uint64_t seed) {
  enc.init(seed);
  Rng rng(seed, 99);
  for (const RegistryEntry& e : enc.registry().entries())  // BN's 1s and 0s too: every value its own (the
    if (e.slot == Slot::Param)                             // padding between tensors stays 0, as init leaves it)
      for (int64_t i = 0; i < e.numel(); ++i) enc.params()[(size_t)(e.offset + i)] = (float)rng.uniform(-1.0, 1.0);
  for (float& s : enc.stats()) s = (float)rng.uniform(0.1, 2.0);
  for (size_t i = 0; i < enc.counts().size(); ++i) enc.counts()[i] = (int64_t)(seed * 1000 + i);
}

bool same_bits(const Encoder& a, const Encoder& b) {
  return a.params().size() == b.params().size() && a.stats().size() == b.stats().size() &&
         a.counts().size() == b.counts().size() &&
         std::memcmp(a.params().data(), b.params().data(), a.params().size() * sizeof(float)) == 0 &&
         std::memcmp(a.stats().data(), b.stats().data(), a.stats().size() * sizeof(float)) == 0 &&
         std::memcmp(a.counts().data(), b.counts().data(), a.counts().size() * sizeof(int64_t)) == 0;
}

std::string import_error(Encoder& enc, const std::string& path, bool strict) {
  return moco::test::error_text([&] { import_encoder(enc, path, strict); });
}

}  // namespace

TEST(Export, TinyResNet18HasExactlyTheRegistryNamesAndDtypes) {
  TempDir dir;
  Encoder enc(tiny_resnet18(Head::Mlp), false);
  fill_distinct(enc, 3);
  const std::string path = dir.file("r18.safetensors");
  export_encoder(enc, path, /*include_head=*/true);

  const SafeTensorsFile f = read_safetensors(path);
  const auto& entries = enc.registry().entries();
  ASSERT_EQ(f.tensors.size(), entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    EXPECT_EQ(f.tensors[i].name, entries[i].name);
    EXPECT_EQ(f.tensors[i].shape, entries[i].shape) << entries[i].name;
    EXPECT_EQ(f.tensors[i].dtype, entries[i].slot == Slot::Count ? "I64" : "F32") << entries[i].name;
    // the bytes are the tensor's own, from its slot's buffer at its offset (fill_distinct made every value
    // distinct, so a tensor written from another's place shows)
    const RegistryEntry& e = entries[i];
    const void* src = e.slot == Slot::Param ? (const void*)(enc.params().data() + e.offset)
                      : e.slot == Slot::Stat ? (const void*)(enc.stats().data() + e.offset)
                                             : (const void*)(enc.counts().data() + e.offset);
    const size_t bytes = (size_t)e.numel() * (e.slot == Slot::Count ? sizeof(int64_t) : sizeof(float));
    ASSERT_EQ(f.tensors[i].bytes.size(), bytes) << e.name;
    EXPECT_EQ(std::memcmp(f.tensors[i].bytes.data(), src, bytes), 0) << e.name;
  }
  EXPECT_NE(f.find("fc.0.weight"), nullptr);
  EXPECT_NE(f.find("fc.2.bias"), nullptr);
  const SafeTensor* nbt = f.find("layer2.0.bn1.num_batches_tracked");
  ASSERT_NE(nbt, nullptr);
  EXPECT_EQ(nbt->shape, Shape{});
  ASSERT_EQ(nbt->bytes.size(), 8u);
  int64_t count;
  std::memcpy(&count, nbt->bytes.data(), 8);
  EXPECT_EQ(count, enc.counts()[enc.registry().find("layer2.0.bn1.num_batches_tracked").offset]);
  ASSERT_EQ(f.metadata.size(), 2u);
  EXPECT_EQ(f.metadata[0].first, "format");
  EXPECT_EQ(f.metadata[0].second, "pt");
  EXPECT_EQ(f.metadata[1].second, enc.config().describe());

  // Without the head: the same list minus "fc.*".
  export_encoder(enc, path, /*include_head=*/false);
  const SafeTensorsFile g = read_safetensors(path);
  EXPECT_EQ(g.tensors.size(), entries.size() - 4);
  for (const SafeTensor& t : g.tensors) EXPECT_FALSE(is_head_tensor(t.name)) << t.name;
}

TEST(Export, ResNet50BackboneHasTorchvisionEntriesAndParameterCount) {
  TempDir dir;
  ResNetConfig cfg;
  cfg.depth = 50;
  cfg.head = Head::Linear;
  cfg.out_dim = 1000;
  Encoder enc(cfg, false);
  enc.init(1);
  const std::string path = dir.file("r50.safetensors");
  export_encoder(enc, path, /*include_head=*/false);

  const SafeTensorsFile f = read_safetensors(path);
  EXPECT_EQ(f.tensors.size(), 318u);  // torchvision's 320 minus fc.weight, fc.bias
  int64_t params = 0, running = 0, counters = 0;
  for (const SafeTensor& t : f.tensors) {
    const RegistryEntry& e = enc.registry().find(t.name);
    if (e.slot == Slot::Param) params += t.numel();
    // Counted a second way, by name alone: every F32 entry except BN running statistics is learnable.
    const bool is_running = t.name.find(".running_") != std::string::npos;
    if (t.dtype == "F32" && is_running) running += t.numel();
    if (t.dtype == "I64") {
      EXPECT_EQ(t.shape, Shape{}) << t.name;
      ++counters;
    }
  }
  int64_t f32_not_running = 0;
  for (const SafeTensor& t : f.tensors)
    if (t.dtype == "F32" && t.name.find(".running_") == std::string::npos) f32_not_running += t.numel();
  EXPECT_EQ(params, 23508032);
  EXPECT_EQ(f32_not_running, 23508032);
  EXPECT_EQ(running, 2 * 26560);  // mean and var for the 26,560 BN channels of the backbone
  EXPECT_EQ(counters, 53);        // one per BN: stem, 16 blocks x 3, 4 downsamples
  EXPECT_EQ(f.tensors.front().name, "conv1.weight");
  EXPECT_EQ(f.tensors.back().name, "layer4.2.bn3.num_batches_tracked");
}

TEST(Export, ImportRoundTripsBitExactly) {
  TempDir dir;
  Encoder src(tiny_resnet18(Head::Mlp), false);
  fill_distinct(src, 5);
  const std::string path = dir.file("rt.safetensors");
  export_encoder(src, path, true);

  Encoder dst(tiny_resnet18(Head::Mlp), false);
  fill_distinct(dst, 6);
  ASSERT_FALSE(same_bits(src, dst));
  ImportReport r = import_encoder(dst, path, /*strict=*/true);
  EXPECT_EQ(r.loaded.size(), src.registry().entries().size());
  EXPECT_TRUE(r.missing.empty());
  EXPECT_TRUE(r.unexpected.empty());
  EXPECT_TRUE(same_bits(src, dst));
}

TEST(Export, BackboneIntoAModelWithANewHead) {
  TempDir dir;
  Encoder pretrained(tiny_resnet18(Head::Mlp), false);
  fill_distinct(pretrained, 7);
  const std::string path = dir.file("backbone.safetensors");
  export_encoder(pretrained, path, /*include_head=*/false);

  Encoder probe(tiny_resnet18(Head::Linear), false);  // the linear classifier: backbone + fresh fc
  fill_distinct(probe, 8);
  const std::vector<float> fc_before(probe.params().begin() + probe.registry().find("fc.weight").offset,
                                     probe.params().end());
  EXPECT_NE(import_error(probe, path, /*strict=*/true).find("fc.weight"), std::string::npos);

  ImportReport r = import_encoder(probe, path, /*strict=*/false);
  EXPECT_EQ(r.missing, (std::vector<std::string>{"fc.weight", "fc.bias"}));
  EXPECT_TRUE(r.unexpected.empty());
  for (const RegistryEntry& e : probe.registry().entries()) {
    if (is_head_tensor(e.name)) continue;
    Tensor a = probe.tensor(e.name), b = pretrained.tensor(e.name);
    EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << e.name;
  }
  const std::vector<float> fc_after(probe.params().begin() + probe.registry().find("fc.weight").offset,
                                    probe.params().end());
  EXPECT_EQ(fc_before, fc_after);  // the fresh head is left alone
}

TEST(Export, ImportErrorsNameTheKeyAndBothShapes) {
  TempDir dir;
  Encoder narrow(tiny_resnet18(Head::None, 4), false);
  fill_distinct(narrow, 1);
  const std::string path = dir.file("narrow.safetensors");
  export_encoder(narrow, path, false);

  Encoder wide(tiny_resnet18(Head::None, 8), false);
  fill_distinct(wide, 2);
  Encoder wide_copy(tiny_resnet18(Head::None, 8), false);
  fill_distinct(wide_copy, 2);
  const std::string msg = import_error(wide, path, /*strict=*/false);
  EXPECT_NE(msg.find("'conv1.weight'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4, 3, 3, 3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(8, 3, 3, 3)"), std::string::npos) << msg;
  EXPECT_TRUE(same_bits(wide, wide_copy));  // nothing copied before the error

  // A file from elsewhere: extra keys are reported, or refused under strict.
  const float x[1] = {1.f};
  const int64_t c = 3;
  std::vector<SafeTensorView> views = {{"bn1.num_batches_tracked", "I64", {}, &c}, {"extra.weight", "F32", {1}, x}};
  const std::string other = dir.file("other.safetensors");
  write_safetensors(other, views);
  ImportReport r = import_encoder(narrow, other, false);
  EXPECT_EQ(r.loaded, std::vector<std::string>{"bn1.num_batches_tracked"});
  EXPECT_EQ(r.unexpected, std::vector<std::string>{"extra.weight"});
  EXPECT_EQ(narrow.counts()[narrow.registry().find("bn1.num_batches_tracked").offset], 3);
  EXPECT_NE(import_error(narrow, other, true).find("extra.weight"), std::string::npos);

  // Wrong dtype for a counter.
  const double d = 3.0;
  write_safetensors(other, {{"bn1.num_batches_tracked", "F64", {}, &d}});
  const std::string dmsg = import_error(narrow, other, false);
  EXPECT_NE(dmsg.find("'bn1.num_batches_tracked' is F64"), std::string::npos) << dmsg;
  EXPECT_NE(dmsg.find("expects I64"), std::string::npos) << dmsg;
}

// A probe's fc, [weight (classes, D), bias (classes)], written in the MoCo head's place: the backbone's
// tensors as export_encoder writes them, then fc.weight (classes, D) and fc.bias (classes) holding the probe's
// values in that layout, which a strict import into a ResNet with a `classes`-way fc takes back.
TEST(Export, ClassifierIsTheBackboneWithTheProbeAsItsFc) {
  TempDir dir;
  Encoder trained(tiny_resnet18(Head::Mlp), false);
  fill_distinct(trained, 5);
  const int64_t d = trained.config().feature_dim(), classes = 3;
  std::vector<float> fc((size_t)(classes * d + classes));
  for (size_t i = 0; i < fc.size(); ++i) fc[i] = 0.25f * (float)i - 1.f;
  const std::string path = dir.file("classifier.safetensors");
  export_classifier(trained, fc, path);

  const SafeTensorsFile file = read_safetensors(path);
  const SafeTensor* w = file.find("fc.weight");
  const SafeTensor* b = file.find("fc.bias");
  ASSERT_TRUE(w && b);
  EXPECT_EQ(w->shape, (Shape{classes, d}));
  EXPECT_EQ(b->shape, (Shape{classes}));
  EXPECT_EQ(std::memcmp(w->bytes.data(), fc.data(), (size_t)(classes * d) * 4), 0);
  EXPECT_EQ(std::memcmp(b->bytes.data(), fc.data() + classes * d, (size_t)classes * 4), 0);
  EXPECT_EQ(file.find("fc.0.weight"), nullptr) << "the MoCo head must not be written";
  EXPECT_EQ(file.tensors.back().name, "fc.bias") << "torchvision's order: the fc last";

  ResNetConfig cfg = tiny_resnet18(Head::Linear);
  cfg.out_dim = (int)classes;
  Encoder classifier(cfg, false);
  const ImportReport r = import_encoder(classifier, path, /*strict=*/true);
  EXPECT_TRUE(r.missing.empty() && r.unexpected.empty());
  for (const RegistryEntry& e : classifier.registry().entries()) {
    if (is_head_tensor(e.name)) continue;
    Tensor x = classifier.tensor(e.name), y = trained.tensor(e.name);
    EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << e.name;
  }
  EXPECT_THROW(export_classifier(trained, std::vector<float>(7), dir.file("bad.safetensors")), Error);
}

// --pretrained (moco/pretrained.h): the network is inferred from the tensors alone, every backbone tensor is
// loaded bit for bit, and a head is left aside. Every torchvision depth, both stems, narrow widths.
TEST(Pretrained, BackboneOfEveryDepthIsInferredAndLoadedBitForBit) {
  TempDir dir;
  for (const auto& [depth, small_stem, width] :
       {std::tuple{18, true, 4}, {34, false, 4}, {50, true, 2}, {101, false, 2}, {152, false, 2}}) {
    ResNetConfig cfg = tiny_resnet18(Head::Mlp, width);
    cfg.depth = depth;
    cfg.small_stem = small_stem;
    Encoder trained(cfg, false);
    fill_distinct(trained, (uint64_t)depth);
    const std::string path = dir.file("r" + std::to_string(depth) + ".safetensors");
    export_encoder(trained, path, /*include_head=*/true);

    int head = -1;
    const std::unique_ptr<Encoder> got = load_pretrained_backbone(path, &head);
    const ResNetConfig& c = got->config();
    EXPECT_EQ(c.depth, depth);
    EXPECT_EQ(c.small_stem, small_stem) << depth;
    EXPECT_EQ(c.width, width) << depth;
    EXPECT_EQ(c.in_channels, 3) << depth;
    EXPECT_EQ(c.head, Head::None) << depth;
    EXPECT_EQ(head, 4) << "fc.0.weight, fc.0.bias, fc.2.weight, fc.2.bias left aside";
    EXPECT_TRUE(got->grads().empty()) << "evaluated only: no gradient buffer";
    for (const RegistryEntry& e : got->registry().entries()) {
      Tensor x = got->tensor(e.name), y = trained.tensor(e.name);
      ASSERT_EQ(x.nbytes(), y.nbytes()) << e.name;
      EXPECT_EQ(std::memcmp(x.raw(), y.raw(), x.nbytes()), 0) << depth << ": " << e.name;
    }
  }
}

namespace {

// The tensors of `from`, changed by `edit` (which may rename, drop or add), written to `to`.
void rewrite(const std::string& from, const std::string& to,
             const std::function<void(std::vector<SafeTensor>&)>& edit) {
  SafeTensorsFile f = read_safetensors(from);
  edit(f.tensors);
  std::vector<SafeTensorView> views;
  for (const SafeTensor& t : f.tensors) views.push_back({t.name, t.dtype, t.shape, t.bytes.data()});
  write_safetensors(to, views);
}

std::string pretrained_error(const std::string& path) {
  return moco::test::error_text([&] { load_pretrained_backbone(path); });
}

}  // namespace

TEST(Pretrained, FilesThatAreNotABackboneSayWhatIsWrong) {
  TempDir dir;
  ResNetConfig cfg = tiny_resnet18(Head::None);
  cfg.depth = 50;
  Encoder enc(cfg, false);
  fill_distinct(enc, 7);
  const std::string good = dir.file("good.safetensors"), bad = dir.file("bad.safetensors");
  export_encoder(enc, good, false);
  struct Case {
    std::function<void(std::vector<SafeTensor>&)> edit;
    const char* says;
  };
  const std::vector<Case> cases = {
      {[](std::vector<SafeTensor>& ts) {  // the authors' checkpoint names, unconverted
         for (SafeTensor& t : ts) t.name = "module.encoder_q." + t.name;
       },
       "tools/convert_moco_checkpoint.py"},
      {[](std::vector<SafeTensor>& ts) { ts.erase(ts.begin()); }, "has no conv1.weight"},
      {[](std::vector<SafeTensor>& ts) {  // a 5x5 stem: neither torchvision's 7x7 nor the small 3x3
         ts[0].shape = {ts[0].shape[0], 3, 5, 5};
         ts[0].bytes.resize((size_t)shape_numel(ts[0].shape) * 4);
       },
       "conv1.weight has shape"},
      {[](std::vector<SafeTensor>& ts) {  // layer3 cut to 5 blocks: 3 4 5 3 is no torchvision ResNet
         ts.erase(std::remove_if(ts.begin(), ts.end(), [](const SafeTensor& t) { return t.name.rfind("layer3.5.", 0) == 0; }),
                  ts.end());
       },
       "bottleneck blocks per stage 3, 4, 5, 3 are none of torchvision's ResNets"},
      {[](std::vector<SafeTensor>& ts) {
         ts.erase(std::find_if(ts.begin(), ts.end(), [](const SafeTensor& t) { return t.name == "layer2.1.bn2.running_var"; }));
       },
       "lacks 1 tensors of resnet50-small-stem-w4, the first layer2.1.bn2.running_var"},
      {[](std::vector<SafeTensor>& ts) { ts.push_back(ts.back()), ts.back().name = "layer5.0.conv1.weight"; },
       "holds 1 tensors that resnet50-small-stem-w4 does not have, the first layer5.0.conv1.weight"},
      {[](std::vector<SafeTensor>& ts) {
         for (SafeTensor& t : ts)
           if (t.name == "layer4.2.conv3.weight") t.shape[0] /= 2, t.bytes.resize(t.bytes.size() / 2);
       },
       "'layer4.2.conv3.weight' has shape"},
      {[](std::vector<SafeTensor>& ts) {  // a grey-image network: the views are RGB
         ts[0].shape[1] = 1;
         ts[0].bytes.resize((size_t)shape_numel(ts[0].shape) * 4);
       },
       "expected (width, 3, k, k)"},
      {[](std::vector<SafeTensor>& ts) {  // a block index no int holds: read as a name like any other
         ts.push_back(ts.back()), ts.back().name = "layer1.99999999999.conv1.weight";
       },
       "does not have, the first layer1.99999999999.conv1.weight"},
  };
  for (const Case& c : cases) {
    rewrite(good, bad, c.edit);
    const std::string why = pretrained_error(bad);
    EXPECT_NE(why.find(c.says), std::string::npos) << "wanted: " << c.says << "\ngot: " << why;
  }
  // PyTorch's own files, which main_lincls.py's --pretrained takes: named, with the converter
  for (const std::string& bytes : {std::string("PK\x03\x04rest of a zip", 20), std::string("\x80\x02}q\x00.", 6)}) {
    {
      std::ofstream f(bad, std::ios::binary);
      f << bytes;
    }
    const std::string why = pretrained_error(bad);
    EXPECT_NE(why.find("is a PyTorch checkpoint"), std::string::npos) << why;
    EXPECT_NE(why.find("tools/convert_moco_checkpoint.py"), std::string::npos) << why;
  }
}
