// The training loop: read it top to bottom. Setup (model, output folder, resume, device, data), then one MoCo step
// per batch with a log line, checkpoints at the end of every epoch and every --save-every-steps, and the kNN
// monitor every --knn-every epochs; SIGINT or SIGTERM ends it after the step in progress, with a checkpoint.
#include "moco/train.h"

#include <sys/stat.h>

#include <cerrno>
#include <csignal>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "moco/error.h"
#include "moco/knn.h"
#include "moco/loader.h"
#include "moco/open_dataset.h"
#include "moco/out_dir.h"
#include "moco/run_log.h"
#include "moco/stop_request.h"

namespace moco {

// ---------------------------------------------------------------- configuration
// The shortest decimal that reads back as exactly v: "0.06", not "0.059999999999999998".

RunConfig run_config(const TrainOptions& o) {
  RunConfig c;
  c["data"] = o.data.empty() ? "fashion-mnist" : o.data;
  c["arch"] = o.arch;
  c["width"] = std::to_string(o.width);
  c["stem"] = o.stem == "auto" ? (o.image_size <= 64 ? "small" : "imagenet") : o.stem;
  c["mlp"] = o.mlp ? "1" : "0";
  c["moco_dim"] = std::to_string(o.moco_dim);
  c["moco_k"] = std::to_string(o.moco_k);
  c["moco_m"] = config_number(o.moco_m);
  c["moco_t"] = config_number(o.moco_t);
  c["bn_splits"] = std::to_string(o.bn_splits);
  c["batch_size"] = std::to_string(o.batch_size);
  // the global batch is batch_size x world_size: a checkpoint's position counts steps of it
  c["world_size"] = std::to_string(std::max(1, o.launch.world));
  c["image_size"] = std::to_string(o.image_size);
  c["recipe"] = o.recipe;
  // the views' resize order (MOCO_RESIZE_AS_PILLOW): a resume may change it, and then says so
  c["resize_as_pillow"] = pillow_resize_from_env() == PillowResize::Pillow13 ? "13" : "12";
  c["seed"] = std::to_string(o.seed);
  c["lr"] = config_number(o.lr);
  c["cos"] = o.cos ? "1" : "0";
  c["schedule"] = config_list(o.schedule);
  c["epochs"] = std::to_string(o.epochs);
  c["momentum"] = config_number(o.momentum);
  c["weight_decay"] = config_number(o.weight_decay);
  return c;
}

const std::vector<std::string>& resume_must_match() {
  static const std::vector<std::string> keys = {"data",      "arch",       "width",      "stem",      "mlp",
                                                "moco_dim",  "moco_k",     "moco_m",     "moco_t",    "bn_splits",
                                                "batch_size", "world_size", "image_size", "recipe",   "seed"};
  return keys;
}

const std::vector<std::string>& resume_may_change() {
  static const std::vector<std::string> keys = {"lr",       "cos",          "schedule",        "epochs",
                                                "momentum", "weight_decay", "resize_as_pillow"};
  return keys;
}

MocoConfig moco_config(const RunConfig& rc) {
  auto get = [&](const char* k) {
    auto it = rc.find(k);
    MOCO_CHECK(it != rc.end(), "run configuration has no '", k, "'");
    return it->second;
  };
  MocoConfig mc;
  const std::string arch = get("arch");
  MOCO_CHECK(arch == "resnet18" || arch == "resnet34" || arch == "resnet50" || arch == "resnet101" ||
                 arch == "resnet152",
             "--arch ", arch, " is not supported; expected resnet18, resnet34, resnet50, resnet101 or resnet152");
  mc.encoder.depth = std::stoi(arch.substr(6));
  mc.encoder.width = std::stoi(get("width"));
  mc.encoder.small_stem = get("stem") == "small";
  mc.encoder.head = get("mlp") == "1" ? Head::Mlp : Head::Linear;
  mc.encoder.out_dim = std::stoi(get("moco_dim"));
  mc.queue_size = std::stoll(get("moco_k"));
  mc.momentum = std::stod(get("moco_m"));
  mc.temperature = std::stof(get("moco_t"));
  mc.bn_splits = std::stoi(get("bn_splits"));
  mc.sgd.momentum = std::stof(get("momentum"));
  mc.sgd.weight_decay = std::stof(get("weight_decay"));
  mc.seed = std::stoull(get("seed"));
  return mc;
}

// ---------------------------------------------------------------- helpers

// The query encoder's backbone (or head: --knn-feature) on the device the run trains on (fx), scored on seeded
// subsets of the splits.
static double knn_monitor(FeatureExtractor& fx, const Encoder& enc, const TrainOptions& o, const Dataset& train,
                          const Dataset& test) {
  const AugmentRecipe eval = recipe_from_name("eval", o.image_size);
  const int64_t batch = std::min<int64_t>(o.batch_size, 256), dim = feature_width(enc.config(), o.knn_feature);
  FeatureSet bank = extract_features(fx, o.knn_feature, dim, train, eval,
                                     sample_indices(train.size(), o.knn_bank, o.seed), batch, o.workers);
  FeatureSet query = extract_features(fx, o.knn_feature, dim, test, eval,
                                      sample_indices(test.size(), o.knn_queries, o.seed), batch, o.workers);
  return fx.knn_top1(bank, query, train.num_classes(), o.knn_k, o.knn_t);
}

// ---------------------------------------------------------------- the run
int run_train(const TrainOptions& o, DeviceStepFactory cuda) {
  MOCO_CHECK(o.device == "cpu" || o.device == "cuda" || o.device == "auto", "--device ", o.device,
             ": expected cpu, cuda or auto");
  MOCO_CHECK(o.device != "cuda" || cuda != nullptr,
             "--device cuda: this build has no CUDA backend; build where nvcc is installed, or use --device cpu");
  const RunConfig rc = run_config(o);
  check_data_root(o.data);  // a mistyped DATA stops the run here, before the output folder or the device
  // ranks: one, or W started by a launcher; all of them train, rank 0 alone prints, logs and writes
  // checkpoints. CPU ranks talk over MPI. GPU ranks talk over NCCL (the device step's communicator), which
  // torchrun and srun can start without MPI: then the host side needs no communicator of its own, and the
  // host Moco (the state holder for checkpoints) gets a single-rank one that it never uses for collectives.
  const bool gpu_ranks_without_mpi =
      o.device != "cpu" && cuda != nullptr && o.launch.world > 1 && o.launch.source != "openmpi";
  std::unique_ptr<Communicator> host_comm =
      gpu_ranks_without_mpi ? std::make_unique<SingleCommunicator>() : make_cpu_communicator(o.launch);
  const bool lead = o.launch.rank == 0;
  const int world = o.launch.world;

  const AugmentRecipe recipe = recipe_from_name(rc.at("recipe"), o.image_size);

  // model: query and key encoders, queue, SGD
  MocoConfig mc = moco_config(rc);
  mc.recompute_bn_relu = o.recompute_bn_relu;
  Moco moco(mc, *host_comm);
  moco.init();  // the same seed on every rank, so every rank starts from the same weights and queue
  if (lead)
    std::fprintf(stderr, "model: %s, %lld parameters per encoder; K=%lld, m=%g, T=%g, %d BN groups x %d rank(s)\n",
                 moco.encoder_q().config().describe().c_str(),
                 (long long)moco.encoder_q().registry().parameter_count(), (long long)o.moco_k, o.moco_m, o.moco_t,
                 o.bn_splits, world);

  // output folder, resume
  if (lead) make_out_dir(o.out);
  const std::string ckpt = o.out + "/checkpoint.mocockpt";
  TrainPosition pos{o.start_epoch, 0, 0};
  MOCO_CHECK(!o.resume.empty() || !std::ifstream(ckpt).good(), "--out ", o.out, " already holds a run (", ckpt,
             "); continue it with --resume ", ckpt, ", or choose another --out");
  if (!o.resume.empty()) {
    RunConfig saved;
    pos = load_checkpoint(o.resume, moco, rc, resume_must_match(), &saved);
    if (lead) {
      std::fprintf(stderr, "resumed %s at epoch %lld, step %lld of it (%lld steps done)\n", o.resume.c_str(),
                   (long long)pos.epoch, (long long)pos.step_in_epoch, (long long)pos.steps_done);
      // the optimiser and the schedule may change on a resume, as in the authors' main_moco.py (a lower --lr
      // past a divergence, more --epochs); the run then differs from an uninterrupted one, which it says
      for (const std::string& key : resume_may_change()) {
        const auto was = saved.find(key);
        if (was != saved.end() && was->second != rc.at(key))
          std::fprintf(stderr, "resumed with %s %s instead of the checkpoint's %s: from here the run is not the "
                       "uninterrupted one\n", key.c_str(), rc.at(key).c_str(), was->second.c_str());
      }
    }
  }
  // the step runs on the GPU when asked (or, with --device auto, when one is usable); the host Moco above
  // keeps the state that checkpoints and the kNN monitor read, refreshed through sync_host()
  std::unique_ptr<DeviceStep> device;
  if (o.device != "cpu" && cuda) {
    device = cuda(moco, *host_comm, o, recipe);
    MOCO_CHECK(device || o.device == "auto", "--device cuda: no usable CUDA device (see above)");
  }
  MOCO_CHECK(device || !gpu_ranks_without_mpi, "the ", o.launch.source, " environment asks for ", world,
             " ranks but no GPU is usable here, and CPU ranks talk over MPI: start them with `mpirun -np ", world,
             " moco train ...`");
  Communicator* comm = device ? &device->communicator() : host_comm.get();  // the run's collectives
  // cuDNN's algorithms as the run being continued chose them: a search picks by timing, which differs from
  // process to process, and the same algorithms make the resumed run compute as the uninterrupted one
  if (device) load_conv_plans(*device, *comm, o.resume, o.launch.rank, world);
  if (lead) std::fprintf(stderr, "device: %s\n", device ? device->describe().c_str() : "cpu");

  // data: the train split, augmented twice per image; the test split only for the kNN monitor. Opened after
  // the device step, whose communicator is the ranks' rendezvous: under torchrun or srun rank 0 listens at
  // NCCL_COMM_ID from there, and scanning a large folder first could outlast the other ranks' connect retries.
  std::unique_ptr<Dataset> train = open_dataset(o.data, "train");
  std::unique_ptr<Dataset> test = o.knn_every > 0 ? open_dataset(o.data, "test") : nullptr;
  if (lead)
    std::fprintf(stderr, "data: %s, %lld images, %d classes; recipe %s at %d px, resized as Pillow %s "
                 "(MOCO_RESIZE_AS_PILLOW)\n",
                 train->name().c_str(), (long long)train->size(), train->num_classes(), rc.at("recipe").c_str(),
                 o.image_size, rc.at("resize_as_pillow").c_str());

  LoaderConfig lc;
  lc.batch = o.batch_size;
  lc.workers = o.workers;
  lc.seed = o.seed;
  lc.rank = o.launch.rank;  // each rank takes its own N of every W*N images
  lc.world = world;
  lc.failure_log = &std::cerr;
  if (device) {
    lc.view_allocator = device->view_allocator();  // page-locked batches for the GPU
    lc.view_dtype = device->view_dtype();          // 8-bit views for the GPU, normalised there
    lc.stages_on_device = device->stages_on_device();  // the host crops; the GPU jitters, blurs and flips
  }
  Loader loader(*train, recipe, lc);
  auto sync_host = [&] {
    if (device) device->store_to(moco);
  };

  std::unique_ptr<MetricsLog> log_file =
      lead ? std::make_unique<MetricsLog>(o.out + "/metrics.jsonl", o.resume.empty() ? -1 : pos.steps_done) : nullptr;
  auto log = [&](const JsonRecord& r) {
    if (log_file) log_file->write(r);
  };
  if (o.resume.empty()) {  // the first line says what the run is, for whoever reads the log later
    JsonRecord config;
    config.add("event", "config").add("world_size", world).add("device", device ? device->describe() : "cpu");
    if (device) config.add("precision", o.precision);
    for (const auto& [key, value] : rc) config.add(key, value);
    log(config);
  }

  const int64_t steps_per_epoch = loader.steps_per_epoch();
  // --start-epoch without --resume counts the epochs it skips as done, so step numbers, the progress line's
  // ETA and the last step's line agree with the epochs that actually run
  if (o.resume.empty()) pos.steps_done = pos.epoch * steps_per_epoch;
  int64_t total_steps = (int64_t)o.epochs * steps_per_epoch;
  if (o.max_steps > 0) total_steps = std::min(total_steps, o.max_steps);
  Progress progress(total_steps, pos.steps_done, o.print_freq, o.batch_size * world);

  // What a failed step tells the user to resume from: the checkpoint this run last wrote, else the one it was
  // resumed from; none before the first save of a new run.
  std::string last_good = o.resume;
  auto resume_hint = [&](bool diverged) {
    const char* lower_lr = " and a lower --lr: with the same settings the run repeats itself";
    if (last_good.empty())
      return std::string("; no checkpoint was written yet") +
             (diverged ? ": start again with a lower --lr" : " (the first is due at the end of the epoch, or "
                                                             "every --save-every-steps)");
    return "; the last good checkpoint is " + last_good + " (resume with --resume " + last_good +
           (diverged ? lower_lr : "") + ")";
  };

  auto save = [&](const TrainPosition& p) {
    // The loss is checked before every update, but an update can still overflow the weights of a step whose
    // loss was finite: such a state is never written over the last good checkpoint.
    std::string non_finite;
    if (lead) {
      sync_host();  // only rank 0 writes; every rank holds the same state
      non_finite = first_non_finite(moco);
      if (non_finite.empty()) {
        save_checkpoint(ckpt, moco, p, rc);
        log(JsonRecord().add("event", "checkpoint").add("step", p.steps_done).add("path", ckpt));
      }
    }
    const bool stop_here = world > 1 ? comm->any(!non_finite.empty()) : !non_finite.empty();  // every rank stops
    if (stop_here)
      fail_diverged("step ", p.steps_done, " left ", non_finite.empty() ? "rank 0's weights" : non_finite,
                    " with an Inf or NaN, though its loss was finite", resume_hint(true));
    if (device) save_conv_plans(*device, o.out, o.launch.rank, world);  // every rank its own, for a resume
    comm->barrier();  // no rank runs ahead of a checkpoint that is not written yet (or failed)
    last_good = ckpt;
  };

  auto monitor = [&] {
    // every rank computes it (the same number): no rank waits at a collective for rank 0's monitor
    sync_host();
    std::unique_ptr<FeatureExtractor> fx = device ? device->feature_extractor(moco.encoder_q())
                                                  : std::make_unique<CpuFeatures>(moco.encoder_q());
    const double top1 = knn_monitor(*fx, moco.encoder_q(), o, *train, *test);
    if (lead) {
      progress.finish();
      std::fprintf(stderr, "epoch %lld: kNN top-1 %.2f%% (%s features)\n", (long long)pos.epoch, top1,
                   feature_layer_name(o.knn_feature));
    }
    log(JsonRecord().add("event", "knn").add("step", pos.steps_done).add("epoch", pos.epoch).add("knn_top1", top1)
            .add("knn_feature", feature_layer_name(o.knn_feature)));
  };
  if (o.knn_every > 0 && pos.steps_done == 0) monitor();  // the starting point of the curve: random init

  // SIGINT / SIGTERM: the run stops after the step in progress, with a checkpoint of it. Several ranks stop
  // after the same step, when any of them was signalled: they vote after every step.
  StopRequest stop;
  auto stop_now = [&] { return world > 1 ? comm->any(stop.signal() != 0) : stop.signal() != 0; };

  bool done = pos.steps_done >= total_steps;
  for (int64_t epoch = pos.epoch; epoch < o.epochs && !done; ++epoch) {
    const float lr = learning_rate((float)o.lr, (int)epoch, o.epochs, o.cos, std::vector<int>(o.schedule.begin(), o.schedule.end()));
    loader.start_epoch(epoch, epoch == pos.epoch ? pos.step_in_epoch : 0);
    Batch batch, ahead;  // this step's batch, and the loader's next one when it is built already
    auto last = std::chrono::steady_clock::now();  // the previous step's end: img/s is wall-clock (saves too)
    auto wait_from = last;                          // when this iteration started waiting for the loader
    while (loader.next(batch)) {
      const auto got = std::chrono::steady_clock::now();  // the batch is here: data time ends, step time starts
      StepStats st;
      // the GPU copies the next batch in while this step computes, when the loader has it built (peek never waits)
      const bool next_ready = device && loader.peek(ahead);
      try {
        // query and key views: (N, 3, S, S) normalised, or (N, S, S, 3) 8-bit crops for the GPU
        st = device ? device->step(batch, lr, next_ready ? &ahead : nullptr)
                    : moco.step(batch.views[0], batch.views[1], lr);
      } catch (const Diverged& e) {
        fail_diverged(e.what(), resume_hint(true));
      } catch (const Error& e) {
        fail(e.what(), resume_hint(false));
      }
      const auto now = std::chrono::steady_clock::now();
      const double img_per_s = (double)(o.batch_size * world) / std::chrono::duration<double>(now - last).count();
      const double data_s = std::chrono::duration<double>(got - wait_from).count();
      const double step_s = std::chrono::duration<double>(now - got).count();
      last = now;
      pos = {epoch, batch.step + 1, pos.steps_done + 1};
      JsonRecord line;
      line.add("step", pos.steps_done)
          .add("epoch", epoch)
          .add("loss", st.loss)  // loss and accuracies of the global batch
          .add("acc1", st.acc1)
          .add("acc5", st.acc5)
          .add("lr", lr)
          .add("img_per_s", img_per_s)
          .add("data_ms", 1000.0 * data_s)   // waiting for the loader: the data path is the bottleneck
          .add("step_ms", 1000.0 * step_s);  // the MoCo step itself, on the CPU or the GPU
      // GPU: whether the next batch was built when this step began, so its copy overlapped the step; false on
      // most steps means the loader does not keep up (more -j workers)
      if (device) line.add("next_ready", next_ready);
      log(line);
      if (lead)
        progress.update(pos.steps_done, epoch, o.epochs, pos.step_in_epoch, steps_per_epoch, st.loss, st.acc1,
                        st.acc5, data_s);
      done = pos.steps_done >= total_steps;
      if (pos.step_in_epoch == steps_per_epoch) pos = {epoch + 1, 0, pos.steps_done};  // an epoch ends here
      const bool saved =
          done || pos.step_in_epoch == 0 || (o.save_every_steps > 0 && pos.steps_done % o.save_every_steps == 0);
      if (saved) save(pos);
      if (done) break;
      if (stop_now()) {
        if (!saved) save(pos);
        const int sig = stop.signal();  // 0 on a rank that stops because another one was signalled
        const std::string why = sig ? signal_name(sig) : "a signal to another rank";
        log(JsonRecord().add("event", "stopped").add("step", pos.steps_done).add("signal", why));
        if (lead) {
          progress.finish();
          std::fprintf(stderr, "stopped by %s after step %lld; checkpoint %s (continue with --resume %s)\n",
                       why.c_str(), (long long)pos.steps_done, ckpt.c_str(), ckpt.c_str());
        }
        return 128 + (sig ? sig : SIGTERM);  // as a shell reports a process ended by that signal
      }
      wait_from = std::chrono::steady_clock::now();
    }
    if (o.knn_every > 0 && pos.step_in_epoch == 0 && pos.epoch % o.knn_every == 0) monitor();
  }
  if (!lead) return 0;
  progress.finish();
  if (loader.skipped() > 0) std::fprintf(stderr, "%lld undecodable images were skipped\n", (long long)loader.skipped());
  std::fprintf(stderr, "done: %lld steps; checkpoint %s, log %s/metrics.jsonl\n", (long long)pos.steps_done,
               ckpt.c_str(), o.out.c_str());
  return 0;
}

}  // namespace moco
