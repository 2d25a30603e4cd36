// Data sets: IDX files written here with zlib and image trees written here with stb_image_write (both from the
// system libraries: libstb exports the writer, so no implementation is compiled into the test), checked pixel
// by pixel; every kind of bad file must come back as `false` with a reason; Fashion-MNIST itself when installed.
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>
#include <stdlib.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "moco/data.h"
#include "moco/error.h"
#include "moco/rng.h"
#include "scoped_env.h"

using namespace moco;
namespace fs = std::filesystem;

namespace {

// A fresh folder under the system temp dir, removed with everything in it at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "moco_data_XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& rel) const { return (path / rel).string(); }
};

void put_be32(std::vector<uint8_t>& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back((uint8_t)(v >> s));
}

void write_gz(const std::string& path, const std::vector<uint8_t>& bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  ASSERT_EQ(gzwrite(f, bytes.data(), (unsigned)bytes.size()), (int)bytes.size());
  gzclose(f);
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write((const char*)bytes.data(), (std::streamsize)bytes.size());
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::vector<uint8_t> b;
  std::string why;
  EXPECT_TRUE(read_file(path, b, size_t(1) << 30, &why)) << why;
  return b;
}

// IDX image file: magic, count, rows, cols, then `pixels` as they are (so a test can cut them short).
std::vector<uint8_t> idx_images(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                                const std::vector<uint8_t>& pixels) {
  std::vector<uint8_t> b;
  put_be32(b, magic);
  put_be32(b, count);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

std::vector<uint8_t> idx_labels(uint32_t magic, uint32_t count, const std::vector<uint8_t>& labels) {
  std::vector<uint8_t> b;
  put_be32(b, magic);
  put_be32(b, count);
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

// The message of the moco::Error that f throws ("" and a test failure when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a moco::Error";
  return "";
}

#define EXPECT_HAS(text, piece) EXPECT_NE(std::string(text).find(piece), std::string::npos) << (text)

// A tiny IDX pair: 3 images of 2 x 3 with pixels 10*i + p, labels {2, 0, 1}.
std::vector<uint8_t> tiny_pixels() {
  std::vector<uint8_t> px;  // (3, 2, 3)
  for (int i = 0; i < 3; ++i)
    for (int p = 0; p < 6; ++p) px.push_back((uint8_t)(10 * i + p));
  return px;
}

}  // namespace

// ---------------------------------------------------------------- IDX

TEST(IdxDataset, ReadsGzipPixelsAndLabelsExactly) {
  TempDir d;
  write_gz(d / "img.gz", idx_images(0x803, 3, 2, 3, tiny_pixels()));
  write_gz(d / "lab.gz", idx_labels(0x801, 3, {2, 0, 1}));
  IdxDataset ds(d / "img.gz", d / "lab.gz");
  EXPECT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.rows(), 2);
  EXPECT_EQ(ds.cols(), 3);
  EXPECT_EQ(ds.num_classes(), 3);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"0", "1", "2"}));
  EXPECT_EQ(ds.label(0), 2);
  EXPECT_EQ(ds.label(1), 0);
  EXPECT_EQ(ds.label(2), 1);
  for (int i = 0; i < 3; ++i) {
    Image img;
    std::string why;
    ASSERT_TRUE(ds.load(i, img, &why)) << why;
    ASSERT_EQ(img.h, 2);
    ASSERT_EQ(img.w, 3);
    ASSERT_EQ(img.pixels.size(), 18u);
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 3; ++x)
        for (int c = 0; c < 3; ++c) EXPECT_EQ(img.at(y, x, c), 10 * i + y * 3 + x) << i << " " << y << " " << x;
  }
  EXPECT_EQ(ds.source(1), "img[1]");
  EXPECT_THROW(ds.label(3), Error);
  Image img;
  EXPECT_THROW(ds.load(-1, img, nullptr), Error);
}

TEST(IdxDataset, ReadsUncompressedFilesToo) {
  TempDir d;
  write_bytes(d / "img", idx_images(0x803, 3, 2, 3, tiny_pixels()));
  write_bytes(d / "lab", idx_labels(0x801, 3, {2, 0, 1}));
  IdxDataset ds(d / "img", d / "lab", {"a", "b", "c", "d"}, "tiny");
  EXPECT_EQ(ds.num_classes(), 4);  // names given: the class count is theirs, not the largest label's
  EXPECT_EQ(ds.name(), "tiny");
  EXPECT_EQ(ds.pixels(2)[5], 25);
}

TEST(IdxDataset, ErrorsNameTheFileAndTheBadValue) {
  TempDir d;
  write_gz(d / "img.gz", idx_images(0x803, 3, 2, 3, tiny_pixels()));
  write_gz(d / "lab.gz", idx_labels(0x801, 3, {2, 0, 1}));

  // Labels passed as images: wrong magic.
  std::string e = error_of([&] { IdxDataset(d / "lab.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "lab.gz");
  EXPECT_HAS(e, "magic 0x00000801, expected 0x00000803 (IDX images)");
  e = error_of([&] { IdxDataset(d / "img.gz", d / "img.gz"); });
  EXPECT_HAS(e, "magic 0x00000803, expected 0x00000801 (IDX labels)");

  // Counts disagree.
  write_gz(d / "lab4.gz", idx_labels(0x801, 4, {2, 0, 1, 1}));
  e = error_of([&] { IdxDataset(d / "img.gz", d / "lab4.gz"); });
  EXPECT_HAS(e, "holds 4 labels");
  EXPECT_HAS(e, "holds 3 images");

  // Fewer pixels than the header announces.
  std::vector<uint8_t> px = tiny_pixels();
  px.resize(14);
  write_gz(d / "short.gz", idx_images(0x803, 3, 2, 3, px));
  e = error_of([&] { IdxDataset(d / "short.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "short.gz");
  EXPECT_HAS(e, "truncated: 14 bytes of pixels, expected 18");

  // Cut inside the header.
  write_gz(d / "head.gz", {0, 0, 8, 3, 0, 0});
  e = error_of([&] { IdxDataset(d / "head.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "truncated in its header");

  // More data than announced.
  px = tiny_pixels();
  px.push_back(7);
  write_gz(d / "long.gz", idx_images(0x803, 3, 2, 3, px));
  e = error_of([&] { IdxDataset(d / "long.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "has data after the 18 bytes");

  // Nonsense image size.
  write_gz(d / "zero.gz", idx_images(0x803, 3, 0, 3, {}));
  e = error_of([&] { IdxDataset(d / "zero.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "image size 0 x 3");

  // A header promising far more than the file holds fails as truncated, not as an allocation.
  write_gz(d / "huge.gz", idx_images(0x803, 0xFFFFFFFFu, 4096, 4096, tiny_pixels()));
  e = error_of([&] { IdxDataset(d / "huge.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "truncated");

  // A label beyond the names given.
  e = error_of([&] { IdxDataset(d / "img.gz", d / "lab.gz", {"a", "b"}); });
  EXPECT_HAS(e, "label 2, expected labels in 0..1");

  // A missing file says how to get it.
  e = error_of([&] { IdxDataset(d / "nope.gz", d / "lab.gz"); });
  EXPECT_HAS(e, "nope.gz does not exist");
  EXPECT_HAS(e, "apt-get install dataset-fashion-mnist");
}

TEST(IdxDataset, FashionMnistFolderFromTheEnvironment) {
  TempDir d;
  write_gz(d / "train-images-idx3-ubyte.gz", idx_images(0x803, 3, 2, 3, tiny_pixels()));
  write_gz(d / "train-labels-idx1-ubyte.gz", idx_labels(0x801, 3, {9, 0, 1}));
  test::ScopedEnv env("MOCO_FASHION_MNIST", d.path.c_str());
  EXPECT_EQ(fashion_mnist_root(), d.path.string());
  IdxDataset ds = fashion_mnist("train");
  EXPECT_EQ(ds.size(), 3);
  EXPECT_EQ(ds.num_classes(), 10);
  EXPECT_EQ(ds.class_names()[9], "Ankle boot");
  EXPECT_EQ(ds.name(), "fashion-mnist/train");
  std::string e = error_of([] { fashion_mnist("test"); });  // no t10k files in the folder
  EXPECT_HAS(e, "t10k-images-idx3-ubyte.gz does not exist");
  EXPECT_HAS(e, "tools/setup.sh");
  e = error_of([] { fashion_mnist("val"); });
  EXPECT_HAS(e, "split 'val', expected 'train' or 'test'");
}

TEST(IdxDataset, InstalledFashionMnist) {
  const std::string root = "/usr/share/datasets/fashion-mnist";
  if (!fs::exists(root + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << root << " not installed (apt-get install dataset-fashion-mnist, or tools/setup.sh)";
  for (auto [split, n] : {std::pair<const char*, int64_t>{"train", 60000}, {"test", 10000}}) {
    IdxDataset ds(root + "/" + (split == std::string("train") ? "train" : "t10k") + "-images-idx3-ubyte.gz",
                  root + "/" + (split == std::string("train") ? "train" : "t10k") + "-labels-idx1-ubyte.gz");
    EXPECT_EQ(ds.size(), n) << split;
    EXPECT_EQ(ds.rows(), 28);
    EXPECT_EQ(ds.cols(), 28);
    EXPECT_EQ(ds.num_classes(), 10);
    std::vector<int64_t> per_class(10, 0);
    for (int64_t i = 0; i < ds.size(); ++i) {
      int l = ds.label(i);
      ASSERT_GE(l, 0);
      ASSERT_LE(l, 9);
      ++per_class[(size_t)l];
    }
    for (int c = 0; c < 10; ++c) EXPECT_EQ(per_class[(size_t)c], n / 10) << split << " class " << c;
    Image img;
    ASSERT_TRUE(ds.load(n - 1, img, nullptr));
    EXPECT_EQ(img.pixels.size(), 28u * 28 * 3);
  }
}

// ---------------------------------------------------------------- decode and ImageFolder

namespace {

// A w x h RGB picture with every pixel distinct enough to catch a transposed or shifted decode.
std::vector<uint8_t> pattern_rgb(int w, int h) {
  std::vector<uint8_t> px;  // (h, w, 3)
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      px.push_back((uint8_t)(40 * x + 7));
      px.push_back((uint8_t)(60 * y + 3));
      px.push_back((uint8_t)(200 - 11 * (x + y)));
    }
  return px;
}

// Smooth enough for JPEG to keep every pixel close.
std::vector<uint8_t> smooth_rgb(int w, int h) {
  std::vector<uint8_t> px;  // (h, w, 3)
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      px.push_back((uint8_t)(60 + 2 * x));
      px.push_back((uint8_t)(120 + y));
      px.push_back((uint8_t)(180 - x - y));
    }
  return px;
}

void expect_pixels(const Image& img, int w, int h, const std::vector<uint8_t>& want, int tolerance) {
  ASSERT_EQ(img.w, w);
  ASSERT_EQ(img.h, h);
  ASSERT_EQ(img.pixels.size(), want.size());
  int worst = 0;
  for (size_t k = 0; k < want.size(); ++k) worst = std::max(worst, std::abs((int)img.pixels[k] - (int)want[k]));
  EXPECT_LE(worst, tolerance);
}

// The tree:  root/dog/{real_png.JPEG, g.PGM}  root/cat/{a.png, b.JPG, c.ppm, gray.png, ...bad files}
//            root/ant/{scan.tif (bad), deep/one.bmp}
// Created out of sorted order, so the class indices must come from sorting.
struct Tree {
  TempDir d;
  std::string root;
  Tree() {
    root = d / "train";
    for (const char* c : {"dog", "cat", "ant", "ant/deep"}) fs::create_directories(root + "/" + c);
    auto rgb = pattern_rgb(4, 3);
    stbi_write_png((root + "/cat/a.png").c_str(), 4, 3, 3, rgb.data(), 4 * 3);
    auto smooth = smooth_rgb(16, 16);
    stbi_write_jpg((root + "/cat/b.JPG").c_str(), 16, 16, 3, smooth.data(), 100);
    std::vector<uint8_t> grey = {0, 50, 100, 150, 200, 250, 1, 2, 3, 4};  // (2, 5)
    stbi_write_png((root + "/cat/gray.png").c_str(), 5, 2, 1, grey.data(), 5);
    // The PNG under a JPEG name (ImageNet has one such file): decoded by its content.
    stbi_write_png((root + "/dog/real_png.JPEG").c_str(), 4, 3, 3, rgb.data(), 4 * 3);
    stbi_write_bmp((root + "/ant/deep/one.bmp").c_str(), 4, 3, 3, rgb.data());
    // binary PPM and PGM: a text header, then the pixels as they are
    std::vector<uint8_t> ppm = {'P', '6', '\n', '4', ' ', '3', '\n', '2', '5', '5', '\n'};
    ppm.insert(ppm.end(), rgb.begin(), rgb.end());
    write_bytes(root + "/cat/c.ppm", ppm);
    std::vector<uint8_t> pgm = {'P', '5', ' ', '5', ' ', '2', ' ', '2', '5', '5', '\n', 0, 50, 100, 150, 200, 250, 1, 2, 3, 4};
    write_bytes(root + "/dog/g.PGM", pgm);
    // a TIFF header with no directory behind it: listed, as torchvision lists .tif, and refused when loaded
    write_bytes(root + "/ant/scan.tif", {'I', 'I', '*', 0, 8, 0, 0, 0});

    // Bad files.
    std::vector<uint8_t> big;  // (64, 64, 3) noisy, so the JPEG has a long scan to cut
    Rng rng(1, 2);
    for (int k = 0; k < 64 * 64 * 3; ++k) big.push_back((uint8_t)(rng.next_u32() & 0xFF));
    stbi_write_jpg((d / "full.jpg").c_str(), 64, 64, 3, big.data(), 90);
    auto full = read_bytes(d / "full.jpg");
    write_bytes(root + "/cat/trunc.jpg", std::vector<uint8_t>(full.begin(), full.begin() + full.size() * 6 / 10));
    std::vector<uint8_t> noise;
    for (int k = 0; k < 3000; ++k) noise.push_back((uint8_t)(rng.next_u32() & 0xFF));
    noise[0] = 0x12;  // no accidental magic number
    write_bytes(root + "/cat/noise.jpg", noise);
    write_bytes(root + "/cat/empty.png", {});
    auto png = read_bytes(root + "/cat/a.png");
    write_bytes(root + "/cat/trunc.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
    write_bytes(root + "/cat/notes.txt", {'h', 'i'});  // not an image extension: not listed
    write_bytes(root + "/readme.md", {'h', 'i'});       // a loose file in root: ignored
  }
};

}  // namespace

TEST(ImageFolderDataset, ClassesFromSortedFoldersAndFilesInTorchvisionOrder) {
  Tree t;
  ImageFolderDataset ds(t.root);
  EXPECT_EQ(ds.class_names(), (std::vector<std::string>{"ant", "cat", "dog"}));
  EXPECT_EQ(ds.num_classes(), 3);
  std::vector<std::string> want = {
      "ant/scan.tif",  "ant/deep/one.bmp", "cat/a.png",     "cat/b.JPG", "cat/c.ppm",        "cat/empty.png",
      "cat/gray.png",  "cat/noise.jpg",    "cat/trunc.jpg", "cat/trunc.png", "dog/g.PGM", "dog/real_png.JPEG"};
  std::vector<int> want_labels = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2};
  ASSERT_EQ(ds.size(), (int64_t)want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(ds.source((int64_t)i), (fs::path(t.root) / want[i]).string());
    EXPECT_EQ(ds.label((int64_t)i), want_labels[i]) << want[i];
  }
  EXPECT_THROW(ds.label(12), Error);
}

TEST(ImageFolderDataset, GoodFilesDecodeAndBadOnesSayWhy) {
  Tree t;
  ImageFolderDataset ds(t.root);
  auto index_of = [&](const std::string& rel) {
    for (int64_t i = 0; i < ds.size(); ++i)
      if (ds.source(i) == (fs::path(t.root) / rel).string()) return i;
    ADD_FAILURE() << rel << " not listed";
    return int64_t(0);
  };
  auto rgb = pattern_rgb(4, 3);
  Image img;
  std::string why;
  ASSERT_TRUE(ds.load(index_of("cat/a.png"), img, &why)) << why;
  expect_pixels(img, 4, 3, rgb, 0);
  ASSERT_TRUE(ds.load(index_of("dog/real_png.JPEG"), img, &why)) << why;
  expect_pixels(img, 4, 3, rgb, 0);
  ASSERT_TRUE(ds.load(index_of("ant/deep/one.bmp"), img, &why)) << why;
  expect_pixels(img, 4, 3, rgb, 0);
  ASSERT_TRUE(ds.load(index_of("cat/c.ppm"), img, &why)) << why;
  expect_pixels(img, 4, 3, rgb, 0);
  ASSERT_TRUE(ds.load(index_of("cat/b.JPG"), img, &why)) << why;
  expect_pixels(img, 16, 16, smooth_rgb(16, 16), 8);  // lossy, but a smooth picture at quality 100 stays close

  const uint8_t grey[10] = {0, 50, 100, 150, 200, 250, 1, 2, 3, 4};
  for (const char* file : {"cat/gray.png", "dog/g.PGM"}) {
    ASSERT_TRUE(ds.load(index_of(file), img, &why)) << file << ": " << why;
    ASSERT_EQ(img.w, 5);
    ASSERT_EQ(img.h, 2);
    for (int y = 0; y < 2; ++y)
      for (int x = 0; x < 5; ++x)
        for (int c = 0; c < 3; ++c)
          EXPECT_EQ(img.at(y, x, c), grey[y * 5 + x]) << file << " " << y << " " << x << " " << c;
  }

  struct Bad {
    const char* file;
    const char* reason;
  };
  for (Bad b : {Bad{"cat/trunc.jpg", "truncated JPEG"}, Bad{"cat/noise.jpg", "unknown format (first bytes 12 "},
                Bad{"cat/empty.png", "empty file"}, Bad{"cat/trunc.png", "PNG"},
                Bad{"ant/scan.tif", "corrupt or truncated TIFF header"}}) {
    why.clear();
    EXPECT_FALSE(ds.load(index_of(b.file), img, &why)) << b.file;
    EXPECT_HAS(why, b.reason);
  }
  // A file that vanished after the scan.
  fs::remove(fs::path(t.root) / "cat/a.png");
  EXPECT_FALSE(ds.load(index_of("cat/a.png"), img, &why));
  EXPECT_HAS(why, "cannot open");
}

TEST(DecodeImage, RefusesTooLargeBeforeDecoding) {
  Tree t;
  auto png = read_bytes(t.root + "/cat/a.png");
  Image img;
  std::string why;
  DecodeLimits small;
  small.max_side = 3;
  EXPECT_FALSE(decode_image(png.data(), png.size(), img, &why, small));
  EXPECT_HAS(why, "PNG of 4 x 3 pixels, expected each side in 1..3");
  small = {};
  small.max_pixels = 11;
  EXPECT_FALSE(decode_image(png.data(), png.size(), img, &why, small));
  EXPECT_HAS(why, "at most 11 pixels");
  small = {};
  small.max_bytes = 10;
  EXPECT_FALSE(decode_image(png.data(), png.size(), img, &why, small));
  EXPECT_HAS(why, "expected at most 10");

  // Headers claiming 16385 x 1000 and 16000 x 16000 (IHDR width and height, big-endian at bytes 16 and 20):
  // stb itself would accept both (it only caps a PNG at 1 GiB of pixels), the default limits refuse them
  // before any pixel buffer exists.
  auto with_size = [&](uint32_t w, uint32_t h) {
    auto b = png;
    for (int k = 0; k < 4; ++k) {
      b[(size_t)(16 + k)] = (uint8_t)(w >> (24 - 8 * k));
      b[(size_t)(20 + k)] = (uint8_t)(h >> (24 - 8 * k));
    }
    return b;
  };
  auto wide = with_size(16385, 1000);
  EXPECT_FALSE(decode_image(wide.data(), wide.size(), img, &why));
  EXPECT_HAS(why, "PNG of 16385 x 1000 pixels, expected each side in 1..16384");
  auto huge = with_size(16000, 16000);
  EXPECT_FALSE(decode_image(huge.data(), huge.size(), img, &why));
  EXPECT_HAS(why, "PNG of 16000 x 16000 pixels");
  EXPECT_HAS(why, "at most 67108864 pixels");

  // A truncated BMP would come back padded with zeros; its header's file size gives it away.
  auto bmp = read_bytes(t.root + "/ant/deep/one.bmp");
  EXPECT_FALSE(decode_image(bmp.data(), bmp.size() - 5, img, &why));
  EXPECT_HAS(why, "truncated BMP");

  // Every prefix and a few bit flips of a good JPEG: never a crash, and a reason whenever it refuses.
  auto jpg = read_bytes(t.root + "/cat/b.JPG");
  Rng rng(3, 4);
  for (size_t n = 0; n <= jpg.size(); n += 7) {
    why.clear();
    if (!decode_image(jpg.data(), n, img, &why)) {
      EXPECT_FALSE(why.empty()) << n;
    }
  }
  for (int trial = 0; trial < 200; ++trial) {
    auto bent = jpg;
    for (int f = 0; f < 4; ++f) bent[rng.next_u32() % bent.size()] ^= (uint8_t)(1u << (rng.next_u32() % 8));
    why.clear();
    if (!decode_image(bent.data(), bent.size(), img, &why)) {
      EXPECT_FALSE(why.empty()) << trial;
    } else {
      EXPECT_EQ(img.pixels.size(), (size_t)img.w * img.h * 3);
    }
  }
}

TEST(DecodeImage, CmykJpegAndUnsupportedJpegs) {
  // ImageNet holds 22 CMYK JPEGs. The fixture is an 8 x 8 picture of RGB (200, 30, 60), saved as an Adobe
  // CMYK JPEG by Pillow: Image.new('RGB', (8, 8), (200, 30, 60)).convert('CMYK').save(path, quality=95).
  auto cmyk = read_bytes(std::string(MOCO_FIXTURE_DIR) + "/cmyk_8x8.jpg");
  Image img;
  std::string why;
  ASSERT_TRUE(decode_image(cmyk.data(), cmyk.size(), img, &why)) << why;
  std::vector<uint8_t> want;  // (8, 8, 3)
  for (int p = 0; p < 64; ++p) want.insert(want.end(), {200, 30, 60});
  expect_pixels(img, 8, 8, want, 4);

  // Variants moco does not decode, made by editing the start-of-frame of a good baseline JPEG (FF C0, length,
  // precision): arithmetic coding (SOF9) and 12-bit samples. Both must be refused with a reason.
  Tree t;
  auto jpg = read_bytes(t.root + "/cat/b.JPG");
  size_t sof = 0;
  for (size_t k = 2; k + 1 < jpg.size(); ++k)
    if (jpg[k] == 0xFF && jpg[k + 1] == 0xC0) {
      sof = k;
      break;
    }
  ASSERT_GT(sof, 0u) << "no baseline SOF0 in the stb-written JPEG";
  auto arithmetic = jpg;
  arithmetic[sof + 1] = 0xC9;
  EXPECT_FALSE(decode_image(arithmetic.data(), arithmetic.size(), img, &why));
  EXPECT_HAS(why, "unsupported JPEG: frame marker FFC9");
  auto twelve_bit = jpg;
  twelve_bit[sof + 4] = 12;
  EXPECT_FALSE(decode_image(twelve_bit.data(), twelve_bit.size(), img, &why));
  EXPECT_HAS(why, "Unsupported JPEG data precision 12");

  // The two Huffman-table faults that crash stb 2.27 (found by tests/fuzz): a table of more than 256 codes,
  // and a scan naming a table no DHT defined.
  auto find_marker = [&](uint8_t m) {
    for (size_t k = 2; k + 1 < jpg.size(); ++k)
      if (jpg[k] == 0xFF && jpg[k + 1] == m) return k;
    ADD_FAILURE() << "no marker FF" << std::hex << (int)m;
    return size_t(0);
  };
  auto oversized = jpg;
  oversized[find_marker(0xC4) + 4 + 16] = 255;  // FF C4, length, class/id, then the 16 counts: the last one
  EXPECT_FALSE(decode_image(oversized.data(), oversized.size(), img, &why));
  EXPECT_HAS(why, "expected at most 256");
  auto undefined = jpg;
  undefined[find_marker(0xDA) + 6] = 0x33;  // FF DA, length, Ns, Cs, then Td/Ta of the first component
  EXPECT_FALSE(decode_image(undefined.data(), undefined.size(), img, &why));
  EXPECT_HAS(why, "Huffman table that no DHT defined");
}

TEST(ImageFolderDataset, RootErrorsNameThePath) {
  TempDir d;
  std::string e = error_of([&] { ImageFolderDataset(d / "missing"); });
  EXPECT_HAS(e, (d / "missing") + " does not exist");
  EXPECT_HAS(e, "root/<class>/<images>");
  fs::create_directories(d / "empty");
  e = error_of([&] { ImageFolderDataset(d / "empty"); });
  EXPECT_HAS(e, (d / "empty") + " holds no class folders");
  fs::create_directories(d / "flat");
  auto rgb = pattern_rgb(4, 3);
  stbi_write_png((d / "flat/x.png").c_str(), 4, 3, 3, rgb.data(), 12);
  e = error_of([&] { ImageFolderDataset(d / "flat"); });
  EXPECT_HAS(e, "holds 1 images but no class folders");
  fs::create_directories(d / "hollow/cls");
  e = error_of([&] { ImageFolderDataset(d / "hollow"); });
  EXPECT_HAS(e, "cls holds no images");
  e = error_of([&] { ImageFolderDataset(d / "flat/x.png"); });
  EXPECT_HAS(e, "is not a folder");
}

// ---------------------------------------------------------------- failure accounting, threads

TEST(DecodeFailures, CountsEveryFailureAndLogsEachSourceOnce) {
  std::ostringstream log;
  DecodeFailures f(&log);
  EXPECT_TRUE(f.record("a.jpg", "truncated JPEG"));
  EXPECT_FALSE(f.record("a.jpg", "truncated JPEG"));
  EXPECT_TRUE(f.record("b.jpg", "empty file"));
  EXPECT_EQ(f.count(), 3);
  EXPECT_EQ(f.distinct(), 2);
  EXPECT_EQ(log.str(), "moco: skipping a.jpg: truncated JPEG\nmoco: skipping b.jpg: empty file\n");
  auto entries = f.entries();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].first, "a.jpg");
  EXPECT_EQ(entries[1].second, "empty file");
}

TEST(DecodeFailures, ManyLoaderThreadsAgreeWithOneThread) {
  Tree t;
  ImageFolderDataset ds(t.root);
  std::vector<Image> serial((size_t)ds.size());
  std::vector<std::string> serial_why((size_t)ds.size());
  std::vector<char> serial_ok((size_t)ds.size());
  for (int64_t i = 0; i < ds.size(); ++i) serial_ok[(size_t)i] = ds.load(i, serial[(size_t)i], &serial_why[(size_t)i]);

  std::ostringstream log;
  DecodeFailures failures(&log);
  const int threads = 8, rounds = 20;
  std::atomic<int> mismatches{0};
  std::vector<std::thread> pool;
  for (int th = 0; th < threads; ++th)
    pool.emplace_back([&, th] {
      Image img;
      for (int r = 0; r < rounds; ++r)
        for (int64_t k = 0; k < ds.size(); ++k) {
          int64_t i = (k + th) % ds.size();
          bool ok = failures.load(ds, i, img);
          if (ok != (bool)serial_ok[(size_t)i] || (ok && img.pixels != serial[(size_t)i].pixels)) ++mismatches;
        }
    });
  for (auto& th : pool) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  int64_t bad = 0;
  for (char ok : serial_ok) bad += !ok;
  EXPECT_EQ(bad, 5);  // trunc.jpg, noise.jpg, empty.png, trunc.png, scan.tif
  EXPECT_EQ(failures.count(), bad * threads * rounds);
  EXPECT_EQ(failures.distinct(), bad);
  for (auto& [source, reason] : failures.entries()) {
    int64_t i = 0;
    while (ds.source(i) != source) ++i;
    EXPECT_EQ(reason, serial_why[(size_t)i]) << source;  // stb's failure text is per thread, never crossed
  }
  std::string lines = log.str();
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), bad);
}
