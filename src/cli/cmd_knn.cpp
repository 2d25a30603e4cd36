// `moco knn [DATA] --checkpoint PATH`: kNN top-1 of a training checkpoint's query backbone (SPEC 5). With
// --random-init the same network is evaluated at its initialisation (the checkpoint's config and seed,
// without its weights): the baseline a trained network has to beat. `--pretrained FILE.safetensors` evaluates
// a backbone from elsewhere instead (moco/pretrained.h).
#include <cstdio>

#include "moco/commands.h"
#include "moco/knn.h"
#include "eval_target.h"

namespace moco {

int cmd_knn(int argc, char** argv) {
  Args a("moco knn", "kNN evaluation (k nearest training images vote with weight exp(sim / t)) of a checkpoint's "
         "backbone or of pretrained weights.");
  declare_eval_options(a, "evaluated", "images per forward");
  a.option("--knn-k", "200", "neighbours");
  a.option("--knn-t", "0.1", "vote temperature");
  a.option("--bank", "0", "train images in the bank (0: all)");
  a.option("--queries", "0", "test images scored (0: all)");
  a.option("--knn-feature", "backbone", "what is scored: backbone | head (as the authors' CIFAR-10 demo does)");
  if (!a.parse(argc, argv, 2)) return 0;
  const FeatureLayer at = parse_feature_layer(a.str("--knn-feature"), "--knn-feature");  // before any work
  MOCO_CHECK(at == FeatureLayer::Backbone || a.str("--pretrained").empty(), "--knn-feature head needs --checkpoint: "
             "--pretrained loads a backbone without its head");
  EvalTarget t = open_eval_target(a, "moco knn");
  const AugmentRecipe eval = recipe_from_name("eval", t.image_size);
  const uint64_t seed = t.seed;
  const int k = (int)a.integer("--knn-k", 1, 1 << 20);
  const int64_t dim = feature_width(t.backbone->config(), at);
  FeatureSet bank = extract_features(*t.features, at, dim, *t.train, eval,
                                     sample_indices(t.train->size(), a.integer("--bank", 0, INT64_MAX), seed),
                                     t.batch_size, t.workers);
  FeatureSet query = extract_features(*t.features, at, dim, *t.test, eval,
                                      sample_indices(t.test->size(), a.integer("--queries", 0, INT64_MAX), seed),
                                      t.batch_size, t.workers);
  const double top1 = t.features->knn_top1(bank, query, t.train->num_classes(), k, a.real("--knn-t", 1e-6, 1e6));
  std::printf("knn_top1 %.2f (%s, %s; %s features, bank %lld, queries %lld, k %d)\n", top1, t.label(),
              t.source.c_str(), feature_layer_name(at), (long long)bank.n, (long long)query.n, k);
  return 0;
}

}  // namespace moco
