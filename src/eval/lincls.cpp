#include "moco/lincls.h"

#include <algorithm>
#include <cstring>

#include "moco/cpu_ops.h"
#include "moco/error.h"
#include "moco/knn.h"
#include "moco/loader.h"
#include "moco/optim.h"
#include "moco/rng.h"

namespace moco {

LinclsResult run_lincls(Encoder& backbone, const Dataset& train, const Dataset& test, const LinclsOptions& o,
                        const std::function<void(int, double)>& on_epoch, FeatureExtractor* features) {
  CpuFeatures on_cpu(backbone);
  FeatureExtractor& fx = features ? *features : on_cpu;
  const int64_t d = backbone.config().feature_dim(), classes = train.num_classes();
  MOCO_CHECK(test.num_classes() == classes, "train split has ", classes, " classes, test split ", test.num_classes());
  // the frozen state, to prove it stayed frozen
  const std::vector<float> params0 = backbone.params(), stats0 = backbone.stats();
  const std::vector<int64_t> counts0 = backbone.counts();
  backbone.set_train(false);  // BN in eval mode: running statistics, no updates

  // the new fc: one flat buffer [weight (classes, D), bias (classes)]
  std::vector<float> fc((size_t)(classes * d + classes), 0.f), grad(fc.size());
  Rng rng(o.seed, mix_stream(0x11C, 0));
  for (int64_t i = 0; i < classes * d; ++i) fc[(size_t)i] = (float)(0.01 * rng.normal());
  float* w = fc.data();
  float* b = fc.data() + classes * d;
  Sgd sgd((int64_t)fc.size(), SgdConfig{(float)o.momentum, (float)o.weight_decay});

  LoaderConfig lc;
  lc.batch = o.batch_size;
  lc.workers = o.workers;
  lc.views = 1;
  lc.seed = o.seed;
  lc.subset = sample_indices(train.size(), o.train_limit, o.seed);
  lc.view_dtype = fx.view_dtype();
  Loader loader(train, recipe_from_name("lincls_train", o.image_size), lc);
  LinclsResult result;
  std::vector<float> logits, dlogits;  // (N, classes)
  std::vector<int64_t> labels;         // (N)
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    float lr = (float)o.lr;
    for (int64_t m : o.schedule) lr *= epoch >= m ? 0.1f : 1.f;
    loader.start_epoch(epoch);
    double loss_sum = 0;
    int64_t steps = 0;
    Batch batch;
    while (loader.next(batch)) {
      Tensor feat = fx.features(batch.views[0]);  // (N, D), no tape: nothing flows back into the backbone
      const int64_t n = feat.size(0);
      logits.resize((size_t)(n * classes));
      dlogits.resize(logits.size());
      labels.assign(batch.labels.begin(), batch.labels.end());
      cpu::linear_forward<float>(n, d, classes, feat.data<float>(), w, b, logits.data());
      loss_sum += cpu::softmax_xent<float>(n, classes, logits.data(), labels.data(), dlogits.data());
      std::fill(grad.begin(), grad.end(), 0.f);
      cpu::linear_backward<float>(n, d, classes, feat.data<float>(), w, dlogits.data(), nullptr, grad.data(),
                                  grad.data() + classes * d);
      sgd.step(fc.data(), grad.data(), lr);
      ++steps;
    }
    result.epoch_loss.push_back(loss_sum / (double)std::max<int64_t>(steps, 1));
    if (on_epoch) on_epoch(epoch, result.epoch_loss.back());
  }

  // top-1 on the eval transform of the test split
  LoaderConfig ec;
  ec.batch = o.batch_size;
  ec.workers = o.workers;
  ec.views = 1;
  ec.shuffle = false;
  ec.drop_last = false;
  ec.subset = sample_indices(test.size(), o.test_limit, o.seed);
  ec.view_dtype = fx.view_dtype();
  Loader eval(test, recipe_from_name("eval", o.image_size), ec);
  eval.start_epoch(0);
  int64_t correct = 0, total = 0;
  Batch batch;
  while (eval.next(batch)) {
    Tensor feat = fx.features(batch.views[0]);  // (N, D)
    const int64_t n = feat.size(0);
    logits.resize((size_t)(n * classes));
    cpu::linear_forward<float>(n, d, classes, feat.data<float>(), w, b, logits.data());
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * classes;
      correct += (std::max_element(row, row + classes) - row) == batch.labels[(size_t)i];
    }
    total += n;
  }
  result.top1 = 100.0 * (double)correct / (double)std::max<int64_t>(total, 1);

  // the sanity check of the protocol: the backbone, BN statistics included, is exactly as it was
  MOCO_CHECK(backbone.params() == params0 && backbone.stats() == stats0 && backbone.counts() == counts0,
             "linear probe changed the frozen backbone; this is a bug, please report it");
  return result;
}

}  // namespace moco
