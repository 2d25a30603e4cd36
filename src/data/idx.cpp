// IDX files (the MNIST family): a big-endian header, then raw uint8 payload. zlib's gzread reads gzip and
// plain files alike, so the Debian .gz files are read in place without unpacking them to disk.
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "moco/data.h"
#include "moco/error.h"

namespace moco {

namespace {

constexpr uint32_t kImagesMagic = 0x00000803;  // uint8 data, 3 dimensions
constexpr uint32_t kLabelsMagic = 0x00000801;  // uint8 data, 1 dimension
constexpr uint32_t kMaxSide = 4096;            // far above any IDX set; rejects a garbage header early

const char* kInstallHint =
    "install it with `apt-get install dataset-fashion-mnist` (or run tools/setup.sh), or set MOCO_FASHION_MNIST "
    "to the folder that holds the IDX files";

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// An open gzip (or plain) file that closes itself and names itself in every error.
class GzFile {
 public:
  explicit GzFile(const std::string& path) : path_(path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) fail("IDX file ", path, " does not exist; ", kInstallHint);
    f_ = gzopen(path.c_str(), "rb");
    if (!f_) fail("cannot open IDX file ", path, ": ", std::strerror(errno));
  }
  ~GzFile() { gzclose(f_); }
  GzFile(const GzFile&) = delete;
  GzFile& operator=(const GzFile&) = delete;

  // Reads up to n bytes; returns how many arrived (fewer only at the end of the data).
  size_t read_some(uint8_t* dst, size_t n) {
    size_t got = 0;
    while (got < n) {
      unsigned chunk = (unsigned)std::min<size_t>(n - got, size_t(1) << 30);  // gzread takes an unsigned
      int r = gzread(f_, dst + got, chunk);
      if (r < 0) {
        int code = 0;
        const char* msg = gzerror(f_, &code);
        fail("IDX file ", path_, " is corrupt after ", got, " bytes of this read: ", msg ? msg : "gzread failed",
             " (zlib code ", code, ")");
      }
      if (r == 0) break;
      got += (size_t)r;
    }
    return got;
  }

  uint32_t read_be32(const char* what) {
    uint8_t b[4];
    size_t got = read_some(b, 4);
    if (got != 4) fail("IDX file ", path_, " is truncated in its header: ", got, " of 4 bytes of ", what);
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
  }

  // Reads exactly n payload bytes and checks nothing follows them. The buffer grows as data arrives, so a
  // header that promises terabytes fails as truncated instead of as an allocation.
  std::vector<uint8_t> read_payload(size_t n, const char* what) {
    std::vector<uint8_t> out;
    const size_t step = size_t(64) << 20;
    while (out.size() < n) {
      size_t have = out.size();
      out.resize(have + std::min(step, n - have));
      size_t got = read_some(out.data() + have, out.size() - have);
      if (have + got < out.size())
        fail("IDX file ", path_, " is truncated: ", have + got, " bytes of ", what, ", expected ", n,
             " (from the header)");
    }
    uint8_t extra;
    if (read_some(&extra, 1) != 0)
      fail("IDX file ", path_, " has data after the ", n, " bytes of ", what, " its header announces");
    return out;
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  gzFile f_ = nullptr;
};

std::string stem(const std::string& path) {
  std::string s = std::filesystem::path(path).filename().string();
  for (const char* ext : {".gz", "-ubyte"})
    if (s.size() > std::strlen(ext) && s.compare(s.size() - std::strlen(ext), std::string::npos, ext) == 0)
      s.resize(s.size() - std::strlen(ext));
  return s;
}

}  // namespace

IdxDataset::IdxDataset(const std::string& images_path, const std::string& labels_path,
                       std::vector<std::string> class_names, std::string name)
    : class_names_(std::move(class_names)), name_(name.empty() ? stem(images_path) : std::move(name)) {
  {
    GzFile f(images_path);
    uint32_t magic = f.read_be32("the magic number");
    if (magic != kImagesMagic)
      fail("IDX file ", images_path, ": magic ", hex32(magic), ", expected ", hex32(kImagesMagic), " (IDX images)");
    uint32_t count = f.read_be32("the image count");
    uint32_t rows = f.read_be32("the row count");
    uint32_t cols = f.read_be32("the column count");
    if (rows < 1 || rows > kMaxSide || cols < 1 || cols > kMaxSide)
      fail("IDX file ", images_path, ": image size ", rows, " x ", cols, ", expected each side in 1..", kMaxSide);
    count_ = count;
    rows_ = (int)rows;
    cols_ = (int)cols;
    images_ = f.read_payload((size_t)count * rows * cols, "pixels");
  }
  {
    GzFile f(labels_path);
    uint32_t magic = f.read_be32("the magic number");
    if (magic != kLabelsMagic)
      fail("IDX file ", labels_path, ": magic ", hex32(magic), ", expected ", hex32(kLabelsMagic), " (IDX labels)");
    uint32_t count = f.read_be32("the label count");
    if ((int64_t)count != count_)
      fail("IDX label file ", labels_path, " holds ", count, " labels but image file ", images_path, " holds ",
           count_, " images; expected equal counts");
    labels_ = f.read_payload(count, "labels");
  }
  int max_label = -1;
  for (uint8_t l : labels_) max_label = std::max(max_label, (int)l);
  if (class_names_.empty()) {
    for (int c = 0; c <= max_label; ++c) class_names_.push_back(std::to_string(c));
  } else if (max_label >= (int)class_names_.size()) {
    fail("IDX label file ", labels_path, " holds label ", max_label, ", expected labels in 0..",
         class_names_.size() - 1, " (", class_names_.size(), " class names given)");
  }
}

int IdxDataset::label(int64_t i) const {
  MOCO_CHECK(i >= 0 && i < count_, name_, ": index ", i, " outside [0, ", count_, ")");
  return labels_[(size_t)i];
}

const uint8_t* IdxDataset::pixels(int64_t i) const {
  MOCO_CHECK(i >= 0 && i < count_, name_, ": index ", i, " outside [0, ", count_, ")");
  return images_.data() + (size_t)i * rows_ * cols_;
}

bool IdxDataset::load(int64_t i, Image& out, std::string* /*why: in-memory pixels always decode*/) const {
  const uint8_t* src = pixels(i);  // (rows, cols) grey
  out.h = rows_;
  out.w = cols_;
  out.pixels.resize((size_t)rows_ * cols_ * 3);  // (H, W, 3)
  for (size_t p = 0; p < (size_t)rows_ * cols_; ++p) {
    out.pixels[3 * p + 0] = src[p];
    out.pixels[3 * p + 1] = src[p];
    out.pixels[3 * p + 2] = src[p];
  }
  return true;
}

std::string IdxDataset::source(int64_t i) const { return name_ + "[" + std::to_string(i) + "]"; }

std::string fashion_mnist_root() {
  const char* env = std::getenv("MOCO_FASHION_MNIST");
  return env && *env ? env : "/usr/share/datasets/fashion-mnist";
}

IdxDataset fashion_mnist(const std::string& split) {
  // The files call the test split "t10k".
  std::string prefix;
  if (split == "train") prefix = "train";
  else if (split == "test") prefix = "t10k";
  else fail("Fashion-MNIST split '", split, "', expected 'train' or 'test'");
  std::string root = fashion_mnist_root();
  return IdxDataset(root + "/" + prefix + "-images-idx3-ubyte.gz", root + "/" + prefix + "-labels-idx1-ubyte.gz",
                    {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                     "Ankle boot"},
                    "fashion-mnist/" + split);
}

}  // namespace moco
