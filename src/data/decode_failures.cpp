// Accounting for items that fail to decode. A corrupt file is skipped rather than fatal (ImageNet holds a
// few), but a data set that silently loses many images would bias training, so every skip is counted and each
// source is logged once, with its reason, however many epochs revisit it.
#include <algorithm>
#include <iostream>

#include "moco/data.h"

namespace moco {

DecodeFailures::DecodeFailures(std::ostream* log) : log_(log) {}
DecodeFailures::DecodeFailures() : log_(&std::cerr) {}

bool DecodeFailures::record(const std::string& source, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  ++count_;
  bool is_new = first_reason_.emplace(source, reason).second;
  if (is_new && log_) *log_ << "moco: skipping " << source << ": " << reason << std::endl;
  return is_new;
}

bool DecodeFailures::load(const Dataset& ds, int64_t i, Image& out) {
  std::string why;
  if (ds.load(i, out, &why)) return true;
  record(ds.source(i), why.empty() ? "cannot be decoded (no reason given)" : why);
  return false;
}

int64_t DecodeFailures::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

int64_t DecodeFailures::distinct() const {
  std::lock_guard<std::mutex> lock(mu_);
  return (int64_t)first_reason_.size();
}

std::vector<std::pair<std::string, std::string>> DecodeFailures::entries() const {
  std::vector<std::pair<std::string, std::string>> out;
  {
    std::lock_guard<std::mutex> lock(mu_);
    out.assign(first_reason_.begin(), first_reason_.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace moco
