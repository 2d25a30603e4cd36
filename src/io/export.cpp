// Encoder <-> safetensors by registry name. The registry already carries torchvision's names and order, so
// export is a walk over its entries pointing into the three flat buffers, and import is the reverse copy.
#include "moco/export.h"

#include <cstring>

#include "moco/error.h"
#include "moco/safetensors.h"

namespace moco {

namespace {

const char* dtype_for(Slot slot) { return slot == Slot::Count ? "I64" : "F32"; }

// Where a registry entry's values sit: in the encoder's parameters, BN statistics or counters.
const void* entry_data(const Encoder& enc, const RegistryEntry& e) {
  return e.slot == Slot::Param  ? (const void*)(enc.params().data() + e.offset)
         : e.slot == Slot::Stat ? (const void*)(enc.stats().data() + e.offset)
                                : (const void*)(enc.counts().data() + e.offset);
}

std::string name_list(const std::vector<std::string>& names) {
  constexpr size_t kShown = 8;  // enough to see the pattern (a prefix, a missing head) without a wall of text
  std::string s;
  for (size_t i = 0; i < names.size() && i < kShown; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > kShown) s += ", ... (" + std::to_string(names.size() - kShown) + " more)";
  return s;
}

}  // namespace

bool is_head_tensor(const std::string& name) { return name.rfind("fc.", 0) == 0; }

void export_encoder(const Encoder& enc, const std::string& path, bool include_head) {
  std::vector<SafeTensorView> views;
  for (const RegistryEntry& e : enc.registry().entries()) {
    if (!include_head && is_head_tensor(e.name)) continue;
    views.push_back({e.name, dtype_for(e.slot), e.shape, entry_data(enc, e)});
  }
  write_safetensors(path, views, {{"format", "pt"}, {"arch", enc.config().describe()}});
}

void export_classifier(const Encoder& enc, const std::vector<float>& fc, const std::string& path) {
  const int64_t d = enc.config().feature_dim();
  MOCO_CHECK(!fc.empty() && fc.size() % (size_t)(d + 1) == 0, "a classifier on ", enc.config().describe(),
             "'s ", d, "-d features holds classes x (", d, " + 1) values, not ", fc.size());
  const int64_t classes = (int64_t)fc.size() / (d + 1);
  std::vector<SafeTensorView> views;
  for (const RegistryEntry& e : enc.registry().entries()) {
    if (is_head_tensor(e.name)) continue;
    views.push_back({e.name, dtype_for(e.slot), e.shape, entry_data(enc, e)});
  }
  views.push_back({"fc.weight", dtype_for(Slot::Param), {classes, d}, fc.data()});
  views.push_back({"fc.bias", dtype_for(Slot::Param), {classes}, fc.data() + classes * d});
  ResNetConfig cfg = enc.config();
  cfg.head = Head::Linear;
  cfg.out_dim = (int)classes;
  write_safetensors(path, views, {{"format", "pt"}, {"arch", cfg.describe()}});
}

ImportReport import_encoder(Encoder& enc, const std::string& path, bool strict) {
  return import_encoder(enc, read_safetensors(path), path, strict);
}

ImportReport import_encoder(Encoder& enc, const SafeTensorsFile& file, const std::string& path, bool strict) {
  const ParamRegistry& reg = enc.registry();
  ImportReport report;

  // Pass 1: match names, check dtype and shape of every pair.
  std::vector<std::pair<const RegistryEntry*, const SafeTensor*>> pairs;
  for (const RegistryEntry& e : reg.entries()) {
    const SafeTensor* t = file.find(e.name);
    if (!t) {
      report.missing.push_back(e.name);
      continue;
    }
    MOCO_CHECK(t->dtype == dtype_for(e.slot), path, ": '", e.name, "' is ", t->dtype, " in the file, the model expects ",
               dtype_for(e.slot));
    MOCO_CHECK(t->shape == e.shape, path, ": '", e.name, "' has shape ", shape_str(t->shape),
               " in the file, the model (", enc.config().describe(), ") expects ", shape_str(e.shape));
    pairs.emplace_back(&e, t);
  }
  for (const SafeTensor& t : file.tensors) {
    bool known = false;
    for (const RegistryEntry& e : reg.entries()) known = known || e.name == t.name;
    if (!known) report.unexpected.push_back(t.name);
  }
  MOCO_CHECK(!strict || (report.missing.empty() && report.unexpected.empty()), path, " does not match the model (",
             enc.config().describe(), "): ", report.missing.size(), " tensors missing from the file [",
             name_list(report.missing), "], ", report.unexpected.size(), " unexpected [", name_list(report.unexpected),
             "]");

  // Pass 2: copy. Dtype and shape are checked, so each copy is exactly numel elements.
  for (const auto& [e, t] : pairs) {
    void* dst = e->slot == Slot::Param  ? (void*)(enc.params().data() + e->offset)
                : e->slot == Slot::Stat ? (void*)(enc.stats().data() + e->offset)
                                        : (void*)(enc.counts().data() + e->offset);
    std::memcpy(dst, t->bytes.data(), t->bytes.size());
    report.loaded.push_back(e->name);
  }
  return report;
}

}  // namespace moco
