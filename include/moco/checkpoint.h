// Training checkpoints: everything needed to continue a run bit-exactly, in one file written atomically.
//
// Contents: both encoders (parameters, BN statistics, counters), the SGD momentum buffer, the queue and its
// pointer, the position (epoch, step within it, steps done), and the run's config as text. The random state
// needs no bytes of its own: every draw is keyed by (seed, epoch, sample, view) or (seed, step), and the
// seed is in the config. A CRC-32 over the payload catches truncation and corruption.
//
// Layout (little-endian): "MOCOCKPT" u32 version u64 payload_bytes payload u32 crc32(payload);
// payload = records { u32 name_len, name, u64 nbytes, bytes }.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "moco/moco.h"

namespace moco {

struct TrainPosition {
  int64_t epoch = 0;          // the epoch in progress
  int64_t step_in_epoch = 0;  // steps of it already done
  int64_t steps_done = 0;     // over the whole run
};

// "key=value" lines; the keys in `must_match` must be equal on resume (model shape, data, batch, seed...).
using RunConfig = std::map<std::string, std::string>;
std::string config_text(const RunConfig& cfg);
RunConfig parse_config_text(const std::string& text);
// A number as config text: the shortest decimal that reads back as the same double ("0.03", not
// "0.029999999999999999").
std::string config_number(double v);
// A list of integers as config text: "120 160".
std::string config_list(const std::vector<int64_t>& v);

// Writes `path` atomically: a temporary file in the same folder, flushed and fsynced, then renamed over it.
void save_checkpoint(const std::string& path, Moco& moco, const TrainPosition& pos, const RunConfig& cfg);

// Restores `moco` and returns the position. Throws, naming the file and the problem, when the file is
// unreadable, truncated, fails its checksum, or comes from a run whose `must_match` keys differ from `cfg`
// (then the message names the key and both values). A key the checkpoint does not hold at all (one written
// before that key was kept) is not compared. `moco` is untouched when it throws. `saved`, when given,
// receives the checkpoint's own configuration.
TrainPosition load_checkpoint(const std::string& path, Moco& moco, const RunConfig& cfg,
                              const std::vector<std::string>& must_match, RunConfig* saved = nullptr);

// The first part of the state a checkpoint keeps that holds an Inf or a NaN, e.g. "the query encoder's
// layer1.0.conv1.weight"; empty when all of it is finite.
std::string first_non_finite(Moco& moco);

// The RunConfig stored in a checkpoint (to rebuild its model), after the same checks as load_checkpoint.
RunConfig read_checkpoint_config(const std::string& path);

// Writes `bytes` to `path` atomically (used by checkpoints and logs): a temporary file, synced, renamed over
// `path`, and the rename synced.
void write_file_atomically(const std::string& path, const std::string& bytes);
// fsync of the folder that holds `path`, so a rename into it survives a crash (best effort: some file systems
// refuse it).
void sync_folder_of(const std::string& path);

}  // namespace moco
