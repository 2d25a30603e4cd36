// Layers with explicit forward and backward, and the layer tape.
//
// forward(x, rec): computes y; when `rec` is non-null (grad mode) the layer saves into it what its backward
// needs. With rec == nullptr (no-grad mode, the key encoder) nothing is kept, so each activation is freed as
// soon as the next layer has consumed it. backward(dy, rec) returns dx and ACCUMULATES parameter gradients
// into the encoder's flat gradient buffer.
//
// The tape is a list of records in forward order; composite layers (residual blocks) keep their children's
// records inside their own, and write their own backward, including the residual sum. ResNet is a static
// graph, so this is all the autograd it needs: no general DAG, no per-op graph nodes.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "moco/backend.h"
#include "moco/registry.h"
#include "moco/tensor.h"

namespace moco {

class Layer;

struct Record {
  Layer* layer = nullptr;
  std::vector<Tensor> saved;
  Shape input_shape;  // for layers whose backward needs only the input's shape (pools)
  std::vector<Record> children;
  bool residual = false;  // BatchNorm2d: its forward added a residual, so its backward returns that gradient
};

// How the encoder runs now: on which device (backend), whose weights, train or eval BN, split-BN groups.
struct NetState {
  Backend* ops = &cpu_backend();
  WeightsView w;
  bool train = true;
  int bn_groups = 1;  // BN statistics per group of N/bn_groups samples (SPEC 4, split-BN)
  // Train mode: a residual block keeps none of its inner BN+ReLU outputs for backward and rebuilds each, bit
  // for bit, just before the backward that reads it (ResidualBlock). Less memory for one more pass each.
  bool recompute_bn_relu = false;
};

class Layer {
 public:
  explicit Layer(const NetState* state) : state_(state) {}
  virtual ~Layer() = default;
  virtual Tensor forward(const Tensor& x, Record* rec) = 0;
  virtual Tensor backward(const Tensor& dy, const Record& rec) = 0;

 protected:
  const NetState* state_;
  // Runs a child layer, giving it a record inside `parent` when in grad mode.
  static Tensor run_child(Layer& child, const Tensor& x, Record* parent);
};

class Tape {
 public:
  Tensor run(Layer& layer, const Tensor& x);
  // Replays the records in reverse and drops each once its backward has run; returns the gradient with
  // respect to the first layer's input. Dropping as it goes hands back what only the later layers kept (on
  // the GPU, to the block cache) while the earlier layers' backward still needs memory, so the step's peak
  // is not all the saved activations plus backward's temporaries at the widest layers.
  Tensor backward(Tensor dy);
  void clear() { records_.clear(); }
  size_t size() const { return records_.size(); }
  // Bytes of the tensors the records keep for backward, each buffer counted once (a ReLU's output is also
  // the next convolution's input).
  int64_t saved_bytes() const;

 private:
  std::vector<Record> records_;
};

class Conv2d : public Layer {
 public:
  // Registers "<name>.weight" (co, ci, k, k).
  Conv2d(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t ci, int64_t co, int64_t k,
         int64_t stride, int64_t pad);
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
  // backward with the input gradient added into dx_sum in place (Backend::conv_backward_add)
  void backward_add(const Tensor& dy, const Record& rec, Tensor& dx_sum);
  bool input_grad = true;  // the stem conv does not need dx

 private:
  int64_t ci_, co_, k_, stride_, pad_, w_off_;
};

// BatchNorm2d, optionally with the ReLU that follows it in a ResNet fused in (`relu`), and, for the last BN
// of a residual block, the residual add before that ReLU (forward_add). Fusing lets the GPU normalise, add
// and rectify in one pass; the CPU runs the same three steps one after the other.
class BatchNorm2d : public Layer {
 public:
  // Registers "<name>.{weight,bias,running_mean,running_var,num_batches_tracked}".
  BatchNorm2d(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t c, bool relu = false);
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
  // y = [relu](bn(x) + residual); backward also returns the residual's gradient.
  Tensor forward_add(const Tensor& x, const Tensor& residual, Record* rec);
  Tensor backward_add(const Tensor& dy, const Record& rec, Tensor* d_residual);
  // The output of a train-mode forward without a residual, rebuilt from its record (Backend::bn_train_recompute).
  Tensor recompute_output(const Record& rec);

 private:
  Tensor run(const Tensor& x, const Tensor* residual, Record* rec);
  int64_t c_;
  bool relu_;
  BnSlots slots_;
};

class ReLU : public Layer {
 public:
  using Layer::Layer;
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
};

class MaxPool : public Layer {  // 3x3, stride 2, padding 1 (the ImageNet stem)
 public:
  using Layer::Layer;
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
};

class GlobalAvgPool : public Layer {  // (N, C, H, W) -> (N, C)
 public:
  using Layer::Layer;
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
};

class Linear : public Layer {
 public:
  // Registers "<name>.weight" (out, in) and "<name>.bias" (out).
  Linear(const NetState* s, ParamRegistry& reg, const std::string& name, int64_t in, int64_t out);
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
  int64_t in() const { return in_; }

 private:
  int64_t in_, out_, w_off_, b_off_;
};

// torchvision BasicBlock (ResNet-18/34) and Bottleneck (ResNet-50, v1.5: stride on the 3x3 conv).
class ResidualBlock : public Layer {
 public:
  ResidualBlock(const NetState* s, ParamRegistry& reg, const std::string& name, bool bottleneck, int64_t inplanes,
                int64_t planes, int64_t stride);
  Tensor forward(const Tensor& x, Record* rec) override;
  Tensor backward(const Tensor& dy, const Record& rec) override;
  int64_t out_channels() const { return out_channels_; }

 private:
  // The main path's backward below the last BN, down to conv1's output gradient. With recompute_bn_relu it
  // works on a copy of the path's records, where each dropped BN+ReLU output goes back, rebuilt, for as long
  // as its two readers (the conv after the BN, then the BN's own backward) need it.
  Tensor backward_main(Tensor d_main, const Record& rec);
  std::vector<std::unique_ptr<Layer>> main_;      // conv1 bn1+relu conv2 [bn2+relu conv3]: up to the last BN
  Conv2d* conv1_ = nullptr;                       // main_[0]: its input gradient is added into the shortcut's
  std::unique_ptr<BatchNorm2d> last_bn_;          // bn2 (basic) or bn3 (bottleneck), fused with add + ReLU
  std::vector<std::unique_ptr<Layer>> shortcut_;  // empty, or downsample.0 (1x1 conv) and downsample.1 (BN)
  int64_t out_channels_;
};

}  // namespace moco
