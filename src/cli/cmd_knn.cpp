// `moco knn [DATA] --checkpoint PATH`: kNN top-1 of a training checkpoint's query backbone (SPEC 5). With
// --random-init the same network is evaluated at its initialisation (the checkpoint's config and seed,
// without its weights): the baseline a trained network has to beat.
#include <cstdio>

#include "moco/args.h"
#include "moco/commands.h"
#include "moco/knn.h"
#include "moco/open_dataset.h"
#include "moco/checkpoint_model.h"

namespace moco {

int cmd_knn(int argc, char** argv) {
  Args a("moco knn", "kNN evaluation (k nearest training images vote with weight exp(sim / t)) of a checkpoint.");
  a.positional("DATA", "ImageFolder root with train/ and val/; omitted: Fashion-MNIST");
  a.option("--checkpoint", "", "training checkpoint whose query backbone is evaluated (required)");
  a.flag("--random-init", "evaluate the checkpoint's network at its initialisation instead of its weights");
  a.option("--knn-k", "200", "neighbours");
  a.option("--knn-t", "0.1", "vote temperature");
  a.option("--bank", "0", "train images in the bank (0: all)");
  a.option("--queries", "0", "test images scored (0: all)");
  a.option("-b,--batch-size", "256", "images per forward");
  a.option("-j,--workers", "2", "data loading threads");
  a.option("--image-size", "", "eval size (default: the checkpoint's)");
  if (!a.parse(argc, argv, 2)) return 0;
  const std::string path = a.str("--checkpoint");
  MOCO_CHECK(!path.empty(), "moco knn needs --checkpoint PATH (a file written by moco train)");
  CheckpointModel model(path, a.on("--random-init"));
  const int size = a.has("--image-size") ? (int)a.integer("--image-size", 8, 4096) : model.image_size();
  auto train = open_dataset(model.data(a.str("DATA")), "train"), test = open_dataset(model.data(a.str("DATA")), "test");
  const AugmentRecipe eval = recipe_from_name("eval", size);
  const uint64_t seed = model.seed();
  const int64_t batch = a.integer("--batch-size", 1, 1 << 20);
  const int workers = (int)a.integer("--workers", 1, 256);
  FeatureSet bank = extract_features(model.query_encoder(), *train, eval,
                                     sample_indices(train->size(), a.integer("--bank", 0, INT64_MAX), seed), batch, workers);
  FeatureSet query = extract_features(model.query_encoder(), *test, eval,
                                      sample_indices(test->size(), a.integer("--queries", 0, INT64_MAX), seed), batch, workers);
  const double top1 = knn_top1(bank, query, train->num_classes(), (int)a.integer("--knn-k", 1, 1 << 20),
                               a.real("--knn-t", 1e-6, 1e6));
  std::printf("knn_top1 %.2f (%s, %s; bank %lld, queries %lld, k %lld)\n", top1,
              a.on("--random-init") ? "random init" : "trained", path.c_str(), (long long)bank.n, (long long)query.n,
              (long long)a.integer("--knn-k", 1, 1 << 20));
  return 0;
}

}  // namespace moco
