#include "eval_target.h"

namespace moco {

void declare_eval_options(Args& a, const char* what_is_evaluated, const char* batch_help) {
  a.positional("DATA", "ImageFolder root with train/ and val/; omitted: the checkpoint's data (Fashion-MNIST)");
  a.option("--checkpoint", "", std::string("training checkpoint whose query backbone is ") + what_is_evaluated +
                                   " (required)");
  a.flag("--random-init", "use the checkpoint's network at its initialisation (its config and seed) instead");
  a.option("-b,--batch-size", "256", batch_help);
  a.option("-j,--workers", "2", "data loading threads");
  a.option("--image-size", "", "eval size (default: the checkpoint's)");
}

EvalTarget open_eval_target(const Args& a, const char* command) {
  EvalTarget t;
  t.checkpoint = a.str("--checkpoint");
  MOCO_CHECK(!t.checkpoint.empty(), command, " needs --checkpoint PATH (a file written by moco train)");
  t.random_init = a.on("--random-init");
  t.model = std::make_unique<CheckpointModel>(t.checkpoint, t.random_init);
  t.image_size = a.has("--image-size") ? (int)a.integer("--image-size", 8, 4096) : t.model->image_size();
  t.batch_size = a.integer("--batch-size", 1, 1 << 20);
  t.workers = (int)a.integer("--workers", 1, 256);
  const std::string data = t.model->data(a.str("DATA"));
  t.train = open_dataset(data, "train");
  t.test = open_dataset(data, "test");
  return t;
}

}  // namespace moco
