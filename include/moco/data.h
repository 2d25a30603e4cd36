// Datasets: indexed collections of decoded images (moco::Image, 8-bit RGB HWC) with integer labels.
//   IdxDataset          IDX files (Fashion-MNIST), gzip read directly, every image held in memory
//   ImageFolderDataset  torchvision's ImageFolder layout root/<class>/<files>, decoded on each load
// Every image file is untrusted input: decode_image checks size and dimensions before it decodes and turns
// any bad file into `false` plus a reason, never a crash. The loader counts and logs such files once each
// through DecodeFailures.
#pragma once
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "moco/image.h"

namespace moco {

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual int num_classes() const = 0;
  virtual int label(int64_t i) const = 0;  // in [0, num_classes)
  // Decodes item i into out. Returns false, with the reason in *why (when why is not null), for an item that
  // cannot be decoded; throws moco::Error for an index outside [0, size). Safe to call from several threads.
  virtual bool load(int64_t i, Image& out, std::string* why) const = 0;
  virtual std::string name() const = 0;
  // Where item i comes from, for log lines: a file path, or "<name>[i]" for in-memory data.
  virtual std::string source(int64_t i) const = 0;
  virtual const std::vector<std::string>& class_names() const = 0;  // (num_classes)
};

// ---- IDX (Fashion-MNIST)

class IdxDataset : public Dataset {
 public:
  // Reads an IDX image file (magic 0x00000803: count, rows, cols, then uint8 pixels) and an IDX label file
  // (magic 0x00000801: count, then uint8 labels), gzip-compressed or plain. Throws moco::Error naming the
  // file and the bad value. class_names empty: the labels' decimal digits "0".."max".
  IdxDataset(const std::string& images_path, const std::string& labels_path,
             std::vector<std::string> class_names = {}, std::string name = "");

  int64_t size() const override { return count_; }
  int num_classes() const override { return (int)class_names_.size(); }
  int label(int64_t i) const override;
  bool load(int64_t i, Image& out, std::string* why) const override;
  std::string name() const override { return name_; }
  std::string source(int64_t i) const override;
  const std::vector<std::string>& class_names() const override { return class_names_; }

  int rows() const { return rows_; }
  int cols() const { return cols_; }
  const uint8_t* pixels(int64_t i) const;  // (rows, cols) grey, for raw-pixel baselines

 private:
  int64_t count_ = 0;
  int rows_ = 0, cols_ = 0;
  std::vector<uint8_t> images_;  // (count, rows, cols)
  std::vector<uint8_t> labels_;  // (count)
  std::vector<std::string> class_names_;
  std::string name_;
};

// Fashion-MNIST from Debian's dataset-fashion-mnist. split: "train" (60000) or "test" (10000). The folder
// is /usr/share/datasets/fashion-mnist unless the environment variable MOCO_FASHION_MNIST names another.
IdxDataset fashion_mnist(const std::string& split);
std::string fashion_mnist_root();

// ---- decoding untrusted image files

struct DecodeLimits {
  size_t max_bytes = size_t(64) << 20;     // file size
  int max_side = 16384;                    // width and height each
  int64_t max_pixels = int64_t(64) << 20;  // width * height
};

// Which library decodes JPEG files. libjpeg-turbo (the default) gives Pillow's pixels exactly and is the
// faster (bench/decode.cpp); stb_image is kept for that benchmark. PNG and BMP always go through stb_image.
enum class JpegDecoder { LibjpegTurbo, Stb };

// Decodes a JPEG, PNG, BMP, WebP (still), TIFF (8-bit and bilevel layouts) or binary PGM/PPM (maxval 255) held
// in memory into 8-bit RGB as Pillow's convert("RGB") gives it (grey replicated, alpha dropped, CMYK converted). Returns false with the reason in *why for an empty, unknown, truncated, corrupt,
// unsupported or too large image; the header is checked against limits before any pixel buffer is
// allocated. Thread-safe.
bool decode_image(const uint8_t* data, size_t n, Image& out, std::string* why, const DecodeLimits& limits = {},
                  JpegDecoder jpeg = JpegDecoder::LibjpegTurbo);

// Reads a whole file, refusing one larger than max_bytes. Returns false with the reason in *why.
bool read_file(const std::string& path, std::vector<uint8_t>& bytes, size_t max_bytes, std::string* why);

// ---- ImageFolder

class ImageFolderDataset : public Dataset {
 public:
  // Scans root/<class>/... : classes are the sorted names of root's sub-folders (index = position, as in
  // torchvision), files are those below each class folder (recursively) whose extension is .jpg, .jpeg,
  // .png or .bmp in any case, in torchvision's order. Throws moco::Error for a missing root, a root without
  // class folders, or a class folder without images.
  explicit ImageFolderDataset(const std::string& root, const DecodeLimits& limits = {});

  int64_t size() const override { return (int64_t)files_.size(); }
  int num_classes() const override { return (int)class_names_.size(); }
  int label(int64_t i) const override;
  bool load(int64_t i, Image& out, std::string* why) const override;
  std::string name() const override { return "imagefolder:" + root_; }
  std::string source(int64_t i) const override;
  const std::vector<std::string>& class_names() const override { return class_names_; }

 private:
  std::string root_;
  DecodeLimits limits_;
  std::vector<std::string> class_names_;  // (num_classes)
  std::vector<std::string> files_;        // (size) paths relative to root: the full paths of ImageNet cost 2x
  std::vector<int32_t> labels_;           // (size)
};

// ---- skipped items

// Counts the items that failed to decode and logs each source once with its reason, from any thread.
class DecodeFailures {
 public:
  explicit DecodeFailures(std::ostream* log);  // log may be null: count only
  DecodeFailures();                             // logs to std::cerr

  // Records one failure; logs it when this source is new. Returns true the first time a source is seen.
  bool record(const std::string& source, const std::string& reason);
  // ds.load(i, out), recording the failure when it returns false.
  bool load(const Dataset& ds, int64_t i, Image& out);

  int64_t count() const;     // all failures, repeats included
  int64_t distinct() const;  // distinct sources
  std::vector<std::pair<std::string, std::string>> entries() const;  // (source, first reason), sorted by source

 private:
  std::ostream* log_;
  mutable std::mutex mu_;
  int64_t count_ = 0;
  std::unordered_map<std::string, std::string> first_reason_;
};

}  // namespace moco
