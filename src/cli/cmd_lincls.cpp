// `moco lincls [DATA] --checkpoint PATH`: the linear probe of SPEC 5 on a checkpoint's query backbone (or with
// --pretrained FILE.safetensors on a backbone from elsewhere, moco/pretrained.h). It keeps
// its own checkpoint and a metrics.jsonl in --out, stops at a signal with a checkpoint of that step, and
// --resume continues it bit for bit.
#include <cstdio>
#include <memory>

#include "moco/commands.h"
#include "moco/lincls.h"
#include "moco/lincls_checkpoint.h"
#include "moco/out_dir.h"
#include "moco/run_log.h"
#include "moco/stop_request.h"
#include "eval_target.h"

namespace moco {

int cmd_lincls(int argc, char** argv) {
  Args a("moco lincls", "Linear classification on the frozen backbone of a training checkpoint or of pretrained "
         "weights (the protocol of the authors' main_lincls.py).");
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
  a.option("--out", "runs/lincls", "folder for lincls.mocockpt (after every epoch) and metrics.jsonl");
  a.option("--resume", "", "probe checkpoint to continue from (lincls.mocockpt), mid-epoch and bit-exact");
  a.flag("-e,--evaluate", "score the probe of --resume on the test split and stop: no training, nothing written "
         "(main_lincls.py's --evaluate)");
  if (!a.parse(argc, argv, 2)) return 0;
  const std::string out = a.str("--out"), resume = a.str("--resume");
  const bool evaluate = a.on("--evaluate");
  MOCO_CHECK(!evaluate || !resume.empty(), "--evaluate scores a trained probe: give it with --resume "
             "PROBE.mocockpt (the lincls.mocockpt of a moco lincls run)");
  MOCO_CHECK(!out.empty(), "--out must name a folder, got an empty string");
  // a mistyped --resume stops here, before the backbone and the data are opened
  std::unique_ptr<LinclsState> from =
      resume.empty() ? nullptr : std::make_unique<LinclsState>(load_lincls_checkpoint(resume));
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
  o.seed = t.seed;
  o.train_limit = a.integer("--train-limit", 0, INT64_MAX);
  o.test_limit = a.integer("--test-limit", 0, INT64_MAX);
  o.eval_every = (int)a.integer("--eval-every", 0, 1 << 20);
  o.config = lincls_config(*t.backbone, t.data.empty() ? "fashion-mnist" : t.data, o);
  o.config["random_init"] = t.random_init ? "1" : "0";
  // where the features are made: another device or precision gives other bits, so a resume must keep them
  o.config["features"] = t.features->describe() == "cpu" ? "cpu" : "cuda " + a.str("--precision");
  o.resume = from.get();
  if (evaluate) {
    o.evaluate_only = true;
    const LinclsResult r = run_lincls(*t.backbone, *t.train, *t.test, o, nullptr, t.features.get());
    std::printf("lincls_top1 %.2f (the probe of %s on %s, %s; backbone unchanged: checked)\n", r.top1, resume.c_str(),
                t.label(), t.source.c_str());
    std::printf("lincls_top5 %.2f\n", r.top5);
    return 0;
  }
  make_out_dir(out);
  o.checkpoint = out + "/lincls.mocockpt";
  StopRequest stop;
  o.stop = [&] { return stop.signal() != 0; };
  MetricsLog log(out + "/metrics.jsonl", from ? from->steps_done : -1);
  if (!from) {
    JsonRecord config;
    config.add("event", "config").add(t.source_key(), t.source);
    for (const auto& [key, value] : o.config) config.add(key, value);
    log.write(config);
  } else {
    std::fprintf(stderr, "lincls: resumed from %s in epoch %lld after its step %lld\n", resume.c_str(),
                 (long long)from->epoch + 1, (long long)from->step_in_epoch);
  }

  LinclsResult r = run_lincls(*t.backbone, *t.train, *t.test, o, [&](const LinclsEpoch& e) {
    JsonRecord line;
    line.add("step", e.steps_done).add("epoch", e.epoch).add("lr", e.lr).add("loss", e.loss);
    if (e.scored) {
      line.add("acc1", e.top1).add("acc5", e.top5).add("best_acc1", e.best_top1);
      std::fprintf(stderr, "lincls epoch %d/%d  loss %.4f  Acc@1 %.2f  Acc@5 %.2f  (best Acc@1 %.2f)\n", e.epoch + 1,
                   o.epochs, e.loss, e.top1, e.top5, e.best_top1);
    } else {
      std::fprintf(stderr, "lincls epoch %d/%d  loss %.4f\n", e.epoch + 1, o.epochs, e.loss);
    }
    log.write(line);
  }, t.features.get());
  if (r.stopped) {
    std::fprintf(stderr, "lincls: stopped by %s after step %lld of epoch %d; checkpoint %s (continue with --resume "
                 "%s)\n", signal_name(stop.signal()), (long long)r.stopped_step, (int)r.stopped_epoch + 1,
                 o.checkpoint.c_str(), o.checkpoint.c_str());
    return 128 + stop.signal();
  }
  std::printf("lincls_top1 %.2f (%s, %s; backbone unchanged: checked)\n", r.top1, t.label(), t.source.c_str());
  std::printf("lincls_top5 %.2f  best_top1 %.2f at epoch %d\n", r.top5, r.best_top1, r.best_epoch + 1);
  return 0;
}

}  // namespace moco
