#include "moco/lincls.h"

#include <algorithm>

#include "moco/error.h"
#include "moco/knn.h"
#include "moco/loader.h"
#include "moco/optim.h"
#include "moco/rng.h"

namespace moco {

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

  LoaderConfig lc;
  lc.batch = o.batch_size;
  lc.workers = o.workers;
  lc.views = 1;
  lc.drop_last = false;  // as the authors' main_lincls.py: every training image, each epoch
  lc.seed = o.seed;
  lc.subset = sample_indices(train.size(), o.train_limit, o.seed);
  lc.view_dtype = fx.view_dtype();
  Loader loader(train, recipe_from_name("lincls_train", o.image_size), lc);
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
      Tensor feat = fx.features(batch.views[0]);  // (N, D)
      const TopHits h = probe->count_correct(feat, batch.labels);
      hits.top1 += h.top1;
      hits.top5 += h.top5;
      total += feat.size(0);
    }
    e.scored = true;
    e.top1 = 100.0 * (double)hits.top1 / (double)std::max<int64_t>(total, 1);
    e.top5 = 100.0 * (double)hits.top5 / (double)std::max<int64_t>(total, 1);
  };

  LinclsResult result;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    float lr = (float)o.lr;
    for (int64_t m : o.schedule) lr *= epoch >= m ? 0.1f : 1.f;
    loader.start_epoch(epoch);
    double loss_sum = 0;
    int64_t steps = 0;
    Batch batch;
    while (loader.next(batch)) {
      Tensor feat = fx.features(batch.views[0]);  // (N, D), no tape: nothing flows back into the backbone
      loss_sum += probe->train_step(feat, batch.labels, lr);
      ++steps;
    }
    LinclsEpoch e;
    e.epoch = epoch;
    e.loss = loss_sum / (double)std::max<int64_t>(steps, 1);
    result.epoch_loss.push_back(e.loss);
    const bool last = epoch + 1 == o.epochs;
    if (last || (o.eval_every > 0 && (epoch + 1) % o.eval_every == 0)) {
      score(e);
      if (result.best_epoch < 0 || e.top1 > result.best_top1) {
        result.best_top1 = e.top1;
        result.best_epoch = epoch;
      }
      if (last) {
        result.top1 = e.top1;
        result.top5 = e.top5;
      }
    }
    if (on_epoch) on_epoch(e);
  }

  // the sanity check of the protocol: the backbone, BN statistics included, is exactly as it was, on the host
  // and in the copy the features were computed with (on the GPU)
  MOCO_CHECK(backbone.params() == params0 && backbone.stats() == stats0 && backbone.counts() == counts0 &&
                 fx.copy_matches(backbone),
             "linear probe changed the frozen backbone; this is a bug, please report it");
  return result;
}

}  // namespace moco
