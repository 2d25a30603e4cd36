#include "moco/lincls.h"

#include <zlib.h>

#include <algorithm>
#include <cstdio>

#include "moco/error.h"
#include "moco/knn.h"
#include "moco/lincls_checkpoint.h"
#include "moco/loader.h"
#include "moco/optim.h"
#include "moco/rng.h"

namespace moco {

std::string backbone_crc32(const Encoder& backbone) {
  auto crc_of = [](uLong crc, const auto& v) {
    return crc32(crc, (const Bytef*)v.data(), (uInt)(v.size() * sizeof(v[0])));
  };
  const uLong weights = crc_of(crc_of(crc32(0L, Z_NULL, 0), backbone.params()), backbone.stats());
  char crc_hex[16];
  std::snprintf(crc_hex, sizeof crc_hex, "%08lx", (unsigned long)weights);
  return crc_hex;
}

RunConfig lincls_config(const Encoder& backbone, const std::string& data, const LinclsOptions& o) {
  return {{"data", data},
          {"backbone", backbone.config().describe()},
          {"backbone_crc32", backbone_crc32(backbone)},
          {"epochs", std::to_string(o.epochs)},
          {"lr", config_number(o.lr)},
          {"momentum", config_number(o.momentum)},
          {"weight_decay", config_number(o.weight_decay)},
          {"schedule", config_list(o.schedule)},
          {"batch_size", std::to_string(o.batch_size)},
          {"image_size", std::to_string(o.image_size)},
          {"seed", std::to_string(o.seed)},
          {"train_limit", std::to_string(o.train_limit)},
          {"test_limit", std::to_string(o.test_limit)}};
}

LinclsResult run_lincls(Encoder& backbone, const Dataset& train, const Dataset& test, const LinclsOptions& o,
                        const std::function<void(const LinclsEpoch&)>& on_epoch, FeatureExtractor* features) {
  CpuFeatures on_cpu(backbone);
  FeatureExtractor& fx = features ? *features : on_cpu;
  const int64_t d = backbone.config().feature_dim(), classes = train.num_classes();
  MOCO_CHECK(test.num_classes() == classes, "train split has ", classes, " classes, test split ", test.num_classes());
  // the frozen state, to prove it stayed frozen
  const std::vector<float> params0 = backbone.params(), stats0 = backbone.stats();
  const std::vector<int64_t> counts0 = backbone.counts();
  backbone.set_train(false);  // BN in eval mode: running statistics, no updates

  // the new fc: one flat buffer [weight (classes, D) ~ N(0, 0.01), bias (classes) = 0], trained where the
  // features are made
  std::vector<float> fc0((size_t)(classes * d + classes), 0.f);
  Rng rng(o.seed, mix_stream(0x11C, 0));
  for (int64_t i = 0; i < classes * d; ++i) fc0[(size_t)i] = (float)(0.01 * rng.normal());
  std::unique_ptr<LinearProbe> probe =
      fx.linear_probe(d, classes, std::move(fc0), SgdConfig{(float)o.momentum, (float)o.weight_decay});

  // where the run stands: from the start, or where its checkpoint left it
  LinclsState at;
  MOCO_CHECK(!o.evaluate_only || o.resume, "evaluating a probe needs the probe checkpoint to score (--resume)");
  if (o.resume) {
    for (const auto& [key, value] : o.config) {
      // a score means something for the features the probe was trained on: the same backbone, data and size
      // (which test images, and how many, is free: a probe trained on a subset may be scored on the whole split)
      if (o.evaluate_only && key != "backbone" && key != "backbone_crc32" && key != "data" && key != "image_size")
        continue;
      const auto it = o.resume->config.find(key);
      const std::string saved = it == o.resume->config.end() ? "(unset)" : it->second;
      MOCO_CHECK(saved == value, "the probe checkpoint is from another run: ", key, "=", saved, " there, but this run "
                 "has ", key, "=", value);
    }
    at = *o.resume;
    probe->set_state(at.fc, at.momentum);
  }
  at.config = o.config;
  auto save = [&]() {
    if (o.checkpoint.empty()) return;
    at.fc = probe->parameters();
    at.momentum = probe->momentum();
    save_lincls_checkpoint(o.checkpoint, at);
  };

  // Acc@1 and Acc@5 on the eval transform of the test split
  LoaderConfig ec;
  ec.batch = o.batch_size;
  ec.workers = o.workers;
  ec.views = 1;
  ec.shuffle = false;
  ec.drop_last = false;
  ec.subset = sample_indices(test.size(), o.test_limit, o.seed);
  ec.view_dtype = fx.view_dtype();
  Loader eval(test, recipe_from_name("eval", o.image_size), ec);
  auto score = [&](LinclsEpoch& e) {
    eval.start_epoch(0);
    TopHits hits;
    int64_t total = 0;
    Batch batch;
    while (eval.next(batch)) {
      Tensor feat = fx.features(batch.views[0], FeatureLayer::Backbone);  // (N, D): SPEC 5's probe input
      const TopHits h = probe->count_correct(feat, batch.labels);
      hits.top1 += h.top1;
      hits.top5 += h.top5;
      total += feat.size(0);
    }
    e.scored = true;
    e.top1 = 100.0 * (double)hits.top1 / (double)std::max<int64_t>(total, 1);
    e.top5 = 100.0 * (double)hits.top5 / (double)std::max<int64_t>(total, 1);
  };

  // the sanity check of the protocol: the backbone, BN statistics included, is exactly as it was, on the host
  // and in the copy the features were computed with (on the GPU)
  auto check_frozen = [&] {
    MOCO_CHECK(backbone.params() == params0 && backbone.stats() == stats0 && backbone.counts() == counts0 &&
                   fx.copy_matches(backbone),
               "linear probe changed the frozen backbone; this is a bug, please report it");
  };
  LinclsResult result;
  if (o.evaluate_only) {
    LinclsEpoch e;
    score(e);
    result.top1 = e.top1;
    result.top5 = e.top5;
    result.best_top1 = at.best_top1;  // the training run's, as its checkpoint kept them
    result.best_epoch = (int)at.best_epoch;
    result.epoch_loss = at.epoch_loss;
    check_frozen();
    return result;
  }
  LoaderConfig lc;
  lc.batch = o.batch_size;
  lc.workers = o.workers;
  lc.views = 1;
  lc.drop_last = false;  // as the authors' main_lincls.py: every training image, each epoch
  lc.seed = o.seed;
  lc.subset = sample_indices(train.size(), o.train_limit, o.seed);
  lc.view_dtype = fx.view_dtype();
  Loader loader(train, recipe_from_name("lincls_train", o.image_size), lc);
  const std::vector<int> milestones(o.schedule.begin(), o.schedule.end());  // lr x0.1 at each
  while (at.epoch < o.epochs) {
    const int epoch = (int)at.epoch;
    const float lr = learning_rate((float)o.lr, epoch, o.epochs, /*cosine=*/false, milestones);
    loader.start_epoch(epoch, at.step_in_epoch);
    Batch batch;
    while (loader.next(batch)) {
      // (N, D), no tape: nothing flows back into the backbone
      Tensor feat = fx.features(batch.views[0], FeatureLayer::Backbone);
      at.loss_sum += probe->train_step(feat, batch.labels, lr);
      ++at.step_in_epoch;
      ++at.steps_done;
      if (o.stop && o.stop()) {
        save();
        result.stopped = true;
        result.stopped_epoch = epoch;
        result.stopped_step = at.step_in_epoch;
        result.epoch_loss = at.epoch_loss;
        return result;
      }
    }
    LinclsEpoch e;
    e.epoch = epoch;
    e.steps_done = at.steps_done;
    e.lr = lr;
    e.loss = at.loss_sum / (double)std::max<int64_t>(at.step_in_epoch, 1);
    at.epoch_loss.push_back(e.loss);
    if (epoch + 1 == o.epochs || (o.eval_every > 0 && (epoch + 1) % o.eval_every == 0)) {
      score(e);
      at.last_top1 = e.top1;
      at.last_top5 = e.top5;
      if (at.best_epoch < 0 || e.top1 > at.best_top1) {
        at.best_top1 = e.top1;
        at.best_epoch = epoch;
      }
    }
    e.best_top1 = at.best_top1;
    if (on_epoch) on_epoch(e);  // logged before the checkpoint, whose resume drops lines of later steps
    ++at.epoch;                 // the checkpoint says where to go on: the next epoch's start
    at.step_in_epoch = 0;
    at.loss_sum = 0;
    save();
  }
  result.top1 = at.last_top1;  // the last epoch is always scored
  result.top5 = at.last_top5;
  result.best_top1 = at.best_top1;
  result.best_epoch = (int)at.best_epoch;
  result.epoch_loss = at.epoch_loss;
  check_frozen();
  return result;
}

}  // namespace moco
