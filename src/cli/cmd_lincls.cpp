// `moco lincls [DATA] --checkpoint PATH`: the linear probe of SPEC 5 on a checkpoint's query backbone.
#include <algorithm>
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
  a.option("--eval-every", "1", "score the test split every N epochs, and after the last (main_lincls.py: every "
           "epoch); 0: after the last only");
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
  o.eval_every = (int)a.integer("--eval-every", 0, 1 << 20);
  double best = -1;
  LinclsResult r = run_lincls(t.model->query_encoder(), *t.train, *t.test, o, [&](const LinclsEpoch& e) {
    if (!e.scored) {
      std::fprintf(stderr, "lincls epoch %d/%d  loss %.4f\n", e.epoch + 1, o.epochs, e.loss);
      return;
    }
    best = std::max(best, e.top1);
    std::fprintf(stderr, "lincls epoch %d/%d  loss %.4f  Acc@1 %.2f  Acc@5 %.2f  (best Acc@1 %.2f)\n", e.epoch + 1,
                 o.epochs, e.loss, e.top1, e.top5, best);
  }, t.features.get());
  std::printf("lincls_top1 %.2f (%s, %s; backbone unchanged: checked)\n", r.top1, t.label(), t.checkpoint.c_str());
  std::printf("lincls_top5 %.2f  best_top1 %.2f at epoch %d\n", r.top5, r.best_top1, r.best_epoch + 1);
  return 0;
}

}  // namespace moco
