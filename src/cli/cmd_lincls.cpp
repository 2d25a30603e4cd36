// `moco lincls [DATA] --checkpoint PATH`: the linear probe of SPEC 5 on a checkpoint's query backbone.
#include <cstdio>

#include "moco/args.h"
#include "moco/commands.h"
#include "moco/lincls.h"
#include "moco/open_dataset.h"
#include "moco/checkpoint_model.h"

namespace moco {

int cmd_lincls(int argc, char** argv) {
  Args a("moco lincls", "Linear classification on the frozen backbone of a training checkpoint (SPEC 5 protocol).");
  a.positional("DATA", "ImageFolder root with train/ and val/; omitted: the checkpoint's data (Fashion-MNIST)");
  a.option("--checkpoint", "", "training checkpoint whose query backbone is probed (required)");
  a.flag("--random-init", "probe the checkpoint's network at its initialisation instead");
  a.option("--epochs", "100", "epochs");
  a.option("--lr", "30", "base learning rate");
  a.list("--schedule", "60 80", "epochs at which lr drops x0.1");
  a.option("--momentum", "0.9", "SGD momentum");
  a.option("--wd,--weight-decay", "0", "weight decay");
  a.option("-b,--batch-size", "256", "images per step");
  a.option("-j,--workers", "2", "data loading threads");
  a.option("--image-size", "", "crop size (default: the checkpoint's)");
  a.option("--train-limit", "0", "train images used (0: all)");
  a.option("--test-limit", "0", "test images scored (0: all)");
  if (!a.parse(argc, argv, 2)) return 0;
  const std::string path = a.str("--checkpoint");
  MOCO_CHECK(!path.empty(), "moco lincls needs --checkpoint PATH (a file written by moco train)");
  CheckpointModel model(path, a.on("--random-init"));
  LinclsOptions o;
  o.epochs = (int)a.integer("--epochs", 1, 100000);
  o.lr = a.real("--lr", 1e-9, 1e4);
  o.schedule = a.integers("--schedule");
  o.momentum = a.real("--momentum", 0, 1);
  o.weight_decay = a.real("--wd", 0, 1);
  o.batch_size = a.integer("--batch-size", 1, 1 << 20);
  o.workers = (int)a.integer("--workers", 1, 256);
  o.image_size = a.has("--image-size") ? (int)a.integer("--image-size", 8, 4096) : model.image_size();
  o.seed = model.seed();
  o.train_limit = a.integer("--train-limit", 0, INT64_MAX);
  o.test_limit = a.integer("--test-limit", 0, INT64_MAX);
  auto train = open_dataset(model.data(a.str("DATA")), "train"), test = open_dataset(model.data(a.str("DATA")), "test");
  LinclsResult r = run_lincls(model.query_encoder(), *train, *test, o, [&](int epoch, double loss) {
    std::fprintf(stderr, "lincls epoch %d/%d  loss %.4f\n", epoch + 1, o.epochs, loss);
  });
  std::printf("lincls_top1 %.2f (%s, %s; backbone unchanged: checked)\n", r.top1,
              a.on("--random-init") ? "random init" : "trained", path.c_str());
  return 0;
}

}  // namespace moco
