#include "moco/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <vector>

#include "moco/error.h"
#include "moco/record_file.h"

namespace moco {

static constexpr char kMagic[8] = {'M', 'O', 'C', 'O', 'C', 'K', 'P', 'T'};
static constexpr uint32_t kVersion = 1;

std::string config_text(const RunConfig& cfg) {
  std::string s;
  for (const auto& [k, v] : cfg) s += k + "=" + v + "\n";
  return s;
}

RunConfig parse_config_text(const std::string& text) {
  RunConfig cfg;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t eq = line.find('=');
    if (eq != std::string::npos) cfg[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return cfg;
}

std::string config_number(double v) {
  char buf[32];
  for (int digits = 6; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string config_list(const std::vector<int64_t>& v) {
  std::string s;
  for (int64_t x : v) s += (s.empty() ? "" : " ") + std::to_string(x);
  return s;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  MOCO_CHECK(fd >= 0, "cannot write ", tmp, ": ", std::strerror(errno), "; is the folder writable?");
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      fail("writing ", tmp, " failed after ", done, " of ", bytes.size(), " bytes: ", why, " (", path,
           " is unchanged)");
    }
    done += (size_t)n;
  }
  // the data on disk before the rename makes it visible under the final name (else a crash could leave a
  // complete-looking but empty file in place of the old one); each errno read before the next call changes it
  std::string why;
  if (::fsync(fd) != 0) why = std::strerror(errno);
  if (::close(fd) != 0 && why.empty()) why = std::strerror(errno);
  if (why.empty() && std::rename(tmp.c_str(), path.c_str()) != 0) why = std::strerror(errno);
  if (!why.empty()) {
    ::unlink(tmp.c_str());
    fail("cannot replace ", path, ": ", why, " (the previous file is unchanged)");
  }
  sync_folder_of(path);
}

void sync_folder_of(const std::string& path) {
  // Best effort: the new file is already in place, and some file systems refuse fsync on a folder.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

// ---------------------------------------------------------------- writing
// The two encoders with the prefix of their records.
static std::vector<std::pair<std::string, Encoder*>> encoders(Moco& m) {
  return {{"q", &m.encoder_q()}, {"k", &m.encoder_k()}};
}

std::string first_non_finite(Moco& moco) {
  auto finite = [](const float* p, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return false;
    return true;
  };
  for (auto [name, enc] : encoders(moco)) {
    const std::string who = name == "q" ? "the query encoder's " : "the key encoder's ";
    for (const RegistryEntry& e : enc->registry().entries()) {
      if (e.slot == Slot::Count) continue;
      const float* base = e.slot == Slot::Param ? enc->params().data() : enc->stats().data();
      if (!finite(base + e.offset, e.numel())) return who + e.name;
    }
  }
  // SGD momentum: laid out as the query encoder's parameters
  const std::vector<float>& momentum = moco.optimizer().momentum_buffer();
  for (const RegistryEntry& e : moco.encoder_q().registry().entries())
    if (e.slot == Slot::Param && !finite(momentum.data() + e.offset, e.numel())) return "the SGD momentum of " + e.name;
  const std::vector<float>& keys = moco.queue().keys();
  if (!finite(keys.data(), (int64_t)keys.size())) return "the queue of keys";
  return "";
}

void save_checkpoint(const std::string& path, Moco& moco, const TrainPosition& pos, const RunConfig& cfg) {
  RecordWriter w;
  const std::string text = config_text(cfg);
  w.add("config", text.data(), text.size());
  const int64_t position[3] = {pos.epoch, pos.step_in_epoch, pos.steps_done};
  w.add("position", position, sizeof(position));
  for (auto [name, enc] : encoders(moco)) {
    w.add_vector(name + ".params", enc->params());
    w.add_vector(name + ".stats", enc->stats());
    w.add_vector(name + ".counts", enc->counts());
  }
  w.add_vector("sgd.momentum", moco.optimizer().momentum_buffer());
  w.add_vector("queue", moco.queue().keys());
  const int64_t ptr = moco.queue().ptr();
  w.add("queue_ptr", &ptr, sizeof(ptr));
  write_file_atomically(path, w.file(kMagic, kVersion));
}

// ---------------------------------------------------------------- reading
// The records of a checkpoint file, after checking its header, length and checksum.
static std::map<std::string, std::string> read_records(const std::string& path) {
  const std::map<std::string, std::string> rec = read_record_file(
      path, kMagic, kVersion, {"checkpoint", "the checkpoint.mocockpt that moco train writes into its --out folder"});
  MOCO_CHECK(rec.count("config"), "checkpoint ", path, " has no 'config' record");
  return rec;
}

RunConfig read_checkpoint_config(const std::string& path) { return parse_config_text(read_records(path).at("config")); }

TrainPosition load_checkpoint(const std::string& path, Moco& moco, const RunConfig& cfg,
                              const std::vector<std::string>& must_match, RunConfig* saved_config) {
  const std::map<std::string, std::string> rec = read_records(path);
  auto need = [&](const std::string& name) -> const std::string& {
    auto it = rec.find(name);
    MOCO_CHECK(it != rec.end(), "checkpoint ", path, " has no '", name, "' record");
    return it->second;
  };
  const RunConfig saved = parse_config_text(need("config"));
  for (const std::string& key : must_match) {
    const auto a = saved.find(key), b = cfg.find(key);
    if (a == saved.end()) continue;  // written before the key was kept: nothing to compare with
    const std::string va = a->second, vb = b == cfg.end() ? "(unset)" : b->second;
    MOCO_CHECK(va == vb, "checkpoint ", path, " is from another configuration: ", key, "=", va,
               " there, but this run has ", key, "=", vb, "; --resume continues that very run (its ranks, batch and "
               "data order), so give it the same ", key, ", or start a new run in another --out");
  }
  // every size is checked before anything is copied, so a mismatch leaves `moco` untouched
  struct Target {
    std::string name;
    void* dst;
    size_t bytes;
    bool param_layout = false;  // laid out like the Param buffer (parameters, SGD momentum)
  };
  std::vector<Target> targets;
  for (auto [name, enc] : encoders(moco)) {
    targets.push_back({name + ".params", enc->params().data(), enc->params().size() * 4, true});
    targets.push_back({name + ".stats", enc->stats().data(), enc->stats().size() * 4});
    targets.push_back({name + ".counts", enc->counts().data(), enc->counts().size() * 8});
  }
  auto& momentum = moco.optimizer().momentum_buffer();
  targets.push_back({"sgd.momentum", momentum.data(), momentum.size() * 4, true});
  targets.push_back({"queue", moco.queue().keys().data(), moco.queue().keys().size() * 4});
  // Checkpoints written when Param tensors started at multiples of 4 elements (now kParamAlign) hold the
  // same tensors at other offsets; they are moved into place entry by entry.
  const ParamRegistry& reg = moco.encoder_q().registry();
  int64_t old_total = 0;
  const std::vector<int64_t> old_offsets = reg.param_offsets(4, &old_total);
  auto old_layout = [&](const Target& t) {
    return t.param_layout && need(t.name).size() != t.bytes && need(t.name).size() == (size_t)old_total * 4;
  };
  for (const Target& t : targets)
    MOCO_CHECK(need(t.name).size() == t.bytes || old_layout(t), "checkpoint ", path, ": '", t.name, "' holds ",
               need(t.name).size(), " bytes, this model needs ", t.bytes);
  MOCO_CHECK(need("position").size() == 24 && need("queue_ptr").size() == 8, "checkpoint ", path,
             ": malformed position or queue pointer");
  int64_t position[3], ptr;
  std::memcpy(position, need("position").data(), 24);
  std::memcpy(&ptr, need("queue_ptr").data(), 8);
  MOCO_CHECK(ptr >= 0 && ptr < moco.queue().size(), "checkpoint ", path, ": queue pointer ", ptr, " outside [0, ",
             moco.queue().size(), ")");
  for (const Target& t : targets) {
    if (!old_layout(t)) {
      std::memcpy(t.dst, need(t.name).data(), t.bytes);
      continue;
    }
    size_t i = 0;
    for (const RegistryEntry& e : reg.entries())
      if (e.slot == Slot::Param)
        std::memcpy(static_cast<float*>(t.dst) + e.offset, need(t.name).data() + old_offsets[i++] * 4,
                    (size_t)e.numel() * 4);
  }
  moco.queue().set_ptr(ptr);
  moco.set_steps_done(position[2]);
  if (saved_config) *saved_config = saved;
  return {position[0], position[1], position[2]};
}

}  // namespace moco
