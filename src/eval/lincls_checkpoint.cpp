// Linear-probe checkpoints (lincls_checkpoint.h).
#include "moco/lincls_checkpoint.h"

#include <cstring>
#include <map>

#include "moco/error.h"
#include "moco/record_file.h"

namespace moco {

static constexpr char kMagic[8] = {'M', 'O', 'C', 'O', 'P', 'R', 'O', 'B'};
static constexpr uint32_t kVersion = 1;

void save_lincls_checkpoint(const std::string& path, const LinclsState& s) {
  RecordWriter w;
  const std::string text = config_text(s.config);
  w.add("config", text.data(), text.size());
  const int64_t position[4] = {s.epoch, s.step_in_epoch, s.steps_done, s.best_epoch};
  w.add("position", position, sizeof(position));
  const double sums[4] = {s.loss_sum, s.best_top1, s.last_top1, s.last_top5};
  w.add("sums", sums, sizeof(sums));
  w.add_vector("epoch_loss", s.epoch_loss);
  w.add_vector("fc", s.fc);
  w.add_vector("sgd.momentum", s.momentum);
  write_file_atomically(path, w.file(kMagic, kVersion));
}

LinclsState load_lincls_checkpoint(const std::string& path) {
  const std::map<std::string, std::string> rec =
      read_record_file(path, kMagic, kVersion,
                       {"probe checkpoint", "the lincls.mocockpt that moco lincls writes into its --out folder"});
  auto need = [&](const std::string& name, size_t unit) -> const std::string& {
    auto it = rec.find(name);
    MOCO_CHECK(it != rec.end(), "probe checkpoint ", path, " has no '", name, "' record");
    MOCO_CHECK(it->second.size() % unit == 0, "probe checkpoint ", path, ": '", name, "' holds ", it->second.size(),
               " bytes, not a whole number of ", unit, "-byte values");
    return it->second;
  };
  LinclsState s;
  s.config = parse_config_text(need("config", 1));
  MOCO_CHECK(need("position", 8).size() == 32 && need("sums", 8).size() == 32, "probe checkpoint ", path,
             ": malformed position");
  int64_t position[4];
  double sums[4];
  std::memcpy(position, need("position", 8).data(), 32);
  std::memcpy(sums, need("sums", 8).data(), 32);
  s.epoch = position[0];
  s.step_in_epoch = position[1];
  s.steps_done = position[2];
  s.best_epoch = position[3];
  s.loss_sum = sums[0];
  s.best_top1 = sums[1];
  s.last_top1 = sums[2];
  s.last_top5 = sums[3];
  auto floats = [&](const std::string& name) {
    const std::string& b = need(name, 4);
    std::vector<float> v(b.size() / 4);
    std::memcpy(v.data(), b.data(), b.size());
    return v;
  };
  const std::string& losses = need("epoch_loss", 8);
  s.epoch_loss.resize(losses.size() / 8);
  std::memcpy(s.epoch_loss.data(), losses.data(), losses.size());
  s.fc = floats("fc");
  s.momentum = floats("sgd.momentum");
  MOCO_CHECK(s.epoch >= 0 && s.step_in_epoch >= 0 && s.steps_done >= 0 && (int64_t)s.epoch_loss.size() == s.epoch &&
                 s.fc.size() == s.momentum.size(),
             "probe checkpoint ", path, ": inconsistent position (epoch ", s.epoch, ", ", s.epoch_loss.size(),
             " epoch losses, ", s.fc.size(), " parameters and ", s.momentum.size(), " momenta)");
  return s;
}

}  // namespace moco
