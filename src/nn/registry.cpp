#include "moco/registry.h"

namespace moco {

int64_t ParamRegistry::add(const std::string& name, const Shape& shape, Slot slot) {
  for (const auto& e : entries_) MOCO_CHECK(e.name != name, "duplicate registry key '", name, "'");
  int64_t& size = sizes_[(int)slot];
  if (slot == Slot::Param) size = (size + kParamAlign - 1) / kParamAlign * kParamAlign;
  int64_t offset = size;
  entries_.push_back({name, shape, slot, offset});
  size += shape_numel(shape);
  return offset;
}

const RegistryEntry& ParamRegistry::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return e;
  fail("no tensor named '", name, "' in the model (", entries_.size(), " entries; first '",
       entries_.empty() ? "" : entries_.front().name, "')");
}

std::vector<int64_t> ParamRegistry::param_offsets(int64_t align, int64_t* total) const {
  std::vector<int64_t> offsets;
  int64_t size = 0;
  for (const RegistryEntry& e : entries_) {
    if (e.slot != Slot::Param) continue;
    size = (size + align - 1) / align * align;
    offsets.push_back(size);
    size += e.numel();
  }
  *total = size;
  return offsets;
}

std::map<int64_t, int64_t> ParamRegistry::param_extents() const {
  std::map<int64_t, int64_t> extents;  // offset -> end
  for (const RegistryEntry& e : entries_)
    if (e.slot == Slot::Param) extents[e.offset] = 0;
  for (auto it = extents.begin(); it != extents.end(); ++it)
    it->second = std::next(it) == extents.end() ? size(Slot::Param) : std::next(it)->first;
  return extents;
}

int64_t ParamRegistry::parameter_count() const { return parameter_count(""); }

int64_t ParamRegistry::parameter_count(const std::string& prefix) const {
  int64_t n = 0;
  for (const auto& e : entries_)
    if (e.slot == Slot::Param && e.name.compare(0, prefix.size(), prefix) == 0) n += e.numel();
  return n;
}

}  // namespace moco
