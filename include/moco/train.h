// `moco train`: MoCo pretraining from the command line. The options carry the authors' flag names
// (main_moco.py); what is fixed for a run (model shape, data, recipe, seed) is also kept as a RunConfig in
// every checkpoint, so a resume can check it and `moco knn` / `moco export` can rebuild the model.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "moco/checkpoint.h"
#include "moco/features.h"
#include "moco/launch.h"
#include "moco/loader.h"
#include "moco/moco.h"

namespace moco {

struct TrainOptions {
  std::string data;             // ImageFolder root; empty = Fashion-MNIST (the embedded default)
  std::string arch = "resnet50";
  int width = 64;               // channels of the stem and layer1 (torchvision: 64)
  std::string stem = "auto";    // imagenet | small | auto (small when image_size <= 64)
  int workers = 2;
  int epochs = 200, start_epoch = 0;
  int64_t batch_size = 256;     // per process (rank); a step trains on world * batch_size images
  double lr = 0.03;
  std::vector<int64_t> schedule = {120, 160};
  double momentum = 0.9, weight_decay = 1e-4;
  int print_freq = 10;
  std::string resume;
  uint64_t seed = 0;
  int moco_dim = 128;
  int64_t moco_k = 65536;
  double moco_m = 0.999, moco_t = 0.07;
  bool mlp = false, aug_plus = false, cos = false;
  bool recompute_bn_relu = false;  // less memory for the same step (MocoConfig); not part of the run's identity
  std::string recipe;           // v1 | v2 | small; empty: v2 with --aug-plus, else v1 (small for Fashion-MNIST)
  int image_size = 224;
  int bn_splits = 8;            // split-BN groups per process (SPEC 4): 8 = the authors' 8 GPUs x 32 images
  std::string device = "auto";
  std::string precision = "bf16";  // compute dtype of the GPU step (bf16 | fp32)
  std::string out = "runs/moco";
  int64_t max_steps = 0;        // 0: no limit
  int64_t save_every_steps = 0; // 0: only at the end of each epoch
  int knn_every = 0;            // epochs between kNN monitors; 0: off
  int knn_k = 200;
  double knn_t = 0.1;
  int64_t knn_bank = 0, knn_queries = 0;  // images of the train / test split used by the monitor; 0: all
  FeatureLayer knn_feature = FeatureLayer::Backbone;  // what the monitor scores (SPEC 5: the backbone)
  LaunchInfo launch;            // this process's rank and the world size, from the launcher (launch.h)
  // The authors' distributed flags as given (-1 / empty: not given). --gpu picks a single process's GPU; with
  // --multiprocessing-distributed, --world-size and --rank count nodes (local_ranks.h).
  int64_t world_flag = -1, rank_flag = -1;
  std::string dist_url;
  int gpu = -1;
  bool multiprocessing_distributed = false;
  bool starts_local_ranks = false;  // this process only starts the node's ranks (and trains on none)
  bool bn_splits_auto = true;       // --bn-splits auto: bn_splits follows the world size
};

// `moco train`'s command line (argv[2..]) as options: the authors' defaults, the small-image recipe's where
// DATA is left out, the ranks from `env`'s launcher variables. Returns false after --help (the text is
// printed); throws, naming the flag and value, on bad input.
bool parse_train_options(int argc, char** argv, const Environment& env, TrainOptions& o);

// The run's fixed facts as text (stored in checkpoints) and the model they describe.
RunConfig run_config(const TrainOptions& o);
MocoConfig moco_config(const RunConfig& rc);
// Keys a resumed run must share with its checkpoint: what shapes the state and the order of the data.
const std::vector<std::string>& resume_must_match();
// Keys a resumed run may change (the optimiser and the schedule), each change said on the terminal.
const std::vector<std::string>& resume_may_change();

// The MoCo step on an accelerator. The host Moco still holds the run's state for checkpoints, the kNN
// monitor and export; store_to writes the device's state into it whenever those need it.
class DeviceStep {
 public:
  virtual ~DeviceStep() = default;
  // One step on a loader batch (views[0] queries, views[1] keys, in the form view_dtype() and
  // stages_on_device() asked for). `next`, when not null, is the batch the following call will hand (the
  // loader's peek): the device may start moving it in while this step computes. It only needs to live until
  // this call returns.
  virtual StepStats step(const Batch& batch, float lr, const Batch* next) = 0;
  virtual void store_to(Moco& host) = 0;
  virtual std::string describe() const = 0;  // "cuda: NVIDIA H100 ..., bf16"
  // The ranks' communicator on the device side (barriers around checkpoints use it).
  virtual Communicator& communicator() = 0;
  // Backbone features of `host` (its current weights) on the device, for the kNN monitor.
  virtual std::unique_ptr<FeatureExtractor> feature_extractor(const Encoder& host) = 0;
  // How the loader should allocate the views it hands to step() (LoaderConfig::view_allocator): the CUDA
  // step gives page-locked memory. Empty: ordinary host memory.
  virtual std::function<Tensor(const Shape&, DType)> view_allocator() { return {}; }
  // The form of the views step() takes from the loader (LoaderConfig::view_dtype), and whether the
  // augmentation stages after the crop run on the device (LoaderConfig::stages_on_device).
  virtual DType view_dtype() const { return DType::F32; }
  virtual bool stages_on_device() const { return false; }
  // The device's choices of kernels by measurement (cuDNN's convolution algorithms) as text, and such text
  // given back before the first step. Measured choices can differ between two processes, and with them the
  // rounding; a resumed run given its predecessor's computes exactly as the predecessor would have.
  virtual std::string conv_plans() const { return {}; }
  virtual void use_conv_plans(const std::string& /*text*/) {}
};
// Makes the device step from the host Moco (already initialised or resumed); `comm` is the run's host
// communicator (it bootstraps the device one); `recipe` is the training views' (the device applies its stages). Returns nullptr where the device cannot be used, after
// printing why (only --device auto accepts that).
using DeviceStepFactory = std::unique_ptr<DeviceStep> (*)(Moco& host, Communicator& comm, const TrainOptions& o,
                                                           const AugmentRecipe& recipe);

// cuDNN's convolution plans (DeviceStep::conv_plans) of rank `rank` of `world`, beside the run's checkpoint
// in `out`: conv_plans.txt for one rank, conv_plans.rank<R>.txt for each of several (their searches choose
// apart). Best effort: a plan file that cannot be written is reported once and costs only the resumed run's
// exactness.
void save_conv_plans(const DeviceStep& device, const std::string& out, int rank, int world);
// The plans a device step starts from: MOCO_CONV_PLANS's (a file for every rank, or a run folder where each
// rank takes its own), else this rank's beside the checkpoint being resumed, else none (the step searches).
// A named file that cannot be read, or a malformed one, stops every rank (they agree over `comm`) with the
// reason.
void load_conv_plans(DeviceStep& device, Communicator& comm, const std::string& resume, int rank, int world);

// Runs training; returns the process exit code. `cuda`: the CUDA step's factory, or nullptr in a CPU-only
// build (then --device cuda is refused).
int run_train(const TrainOptions& o, DeviceStepFactory cuda = nullptr);

}  // namespace moco
