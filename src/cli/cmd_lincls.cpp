// `moco lincls [DATA] --checkpoint PATH`: the linear probe of SPEC 5 on a checkpoint's query backbone.
#include <cstdio>

#include "moco/commands.h"
#include "moco/lincls.h"
#include "eval_target.h"

namespace moco {

int cmd_lincls(int argc, char** argv) {
  Args a("moco lincls", "Linear classification on the frozen backbone of a training checkpoint (SPEC 5 protocol).");
  declare_eval_options(a, "probed", "images per step");
  a.option("--epochs", "100", "epochs");
  a.option("--lr", "30", "base learning rate");
  a.list("--schedule", "60 80", "epochs at which lr drops x0.1");
  a.option("--momentum", "0.9", "SGD momentum");
  a.option("--wd,--weight-decay", "0", "weight decay");
  a.option("--train-limit", "0", "train images used (0: all)");
  a.option("--test-limit", "0", "test images scored (0: all)");
  if (!a.parse(argc, argv, 2)) return 0;
  EvalTarget t = open_eval_target(a, "moco lincls");
  LinclsOptions o;
  o.epochs = (int)a.integer("--epochs", 1, 100000);
  o.lr = a.real("--lr", 1e-9, 1e4);
  o.schedule = a.integers("--schedule");
  o.momentum = a.real("--momentum", 0, 1);
  o.weight_decay = a.real("--wd", 0, 1);
  o.batch_size = t.batch_size;
  o.workers = t.workers;
  o.image_size = t.image_size;
  o.seed = t.model->seed();
  o.train_limit = a.integer("--train-limit", 0, INT64_MAX);
  o.test_limit = a.integer("--test-limit", 0, INT64_MAX);
  LinclsResult r = run_lincls(t.model->query_encoder(), *t.train, *t.test, o, [&](int epoch, double loss) {
    std::fprintf(stderr, "lincls epoch %d/%d  loss %.4f\n", epoch + 1, o.epochs, loss);
  }, t.features.get());
  std::printf("lincls_top1 %.2f (%s, %s; backbone unchanged: checked)\n", r.top1, t.label(), t.checkpoint.c_str());
  return 0;
}

}  // namespace moco
