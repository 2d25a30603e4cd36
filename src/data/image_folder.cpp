// torchvision's ImageFolder layout: root/<class>/**/<image>. The scan reproduces torchvision's class indices
// (sorted folder names) and file order (sorted by folder, then by file name), so a linear-probe label here is
// the same integer as in a PyTorch run over the same tree. Files are decoded on each load, never cached.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "moco/data.h"
#include "moco/error.h"

namespace fs = std::filesystem;

namespace moco {

namespace {

const char* kLayout = "expected torchvision's ImageFolder layout root/<class>/<images>";

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  for (char& c : ext) c = (char)std::tolower((unsigned char)c);
  // torchvision's IMG_EXTENSIONS, so that the files, their order and so the sample indices are the same as a
  // PyTorch run's over the same tree.
  for (const char* e : {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"})
    if (ext == e) return true;
  return false;
}

// The images below one class folder, as (folder relative to root, file name), in torchvision's order.
// Symlinked files are followed; symlinked sub-folders are not, so a link loop cannot make the scan endless.
std::vector<std::pair<std::string, std::string>> list_images(const fs::path& root, const fs::path& class_dir) {
  std::vector<std::pair<std::string, std::string>> found;
  std::error_code ec;
  fs::recursive_directory_iterator it(class_dir, fs::directory_options::skip_permission_denied, ec), end;
  if (ec) fail("cannot list ImageFolder class folder ", class_dir.string(), ": ", ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) fail("cannot list ImageFolder class folder ", class_dir.string(), ": ", ec.message());
    std::error_code ec2;
    if (!it->is_regular_file(ec2) || !has_image_extension(it->path())) continue;
    found.emplace_back(it->path().parent_path().lexically_relative(root).string(), it->path().filename().string());
  }
  if (ec) fail("cannot list ImageFolder class folder ", class_dir.string(), ": ", ec.message());
  std::sort(found.begin(), found.end());
  return found;
}

}  // namespace

bool read_file(const std::string& path, std::vector<uint8_t>& bytes, size_t max_bytes, std::string* why) {
  auto fail_with = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return fail_with(std::string("cannot open: ") + std::strerror(errno));
  if (std::fseek(f.get(), 0, SEEK_END) != 0) return fail_with(std::string("cannot seek: ") + std::strerror(errno));
  long size = std::ftell(f.get());
  if (size < 0) return fail_with(std::string("cannot tell the size: ") + std::strerror(errno));
  if ((size_t)size > max_bytes)
    return fail_with("file of " + std::to_string(size) + " bytes, expected at most " + std::to_string(max_bytes));
  std::rewind(f.get());
  bytes.resize((size_t)size);
  size_t got = size ? std::fread(bytes.data(), 1, (size_t)size, f.get()) : 0;
  if (got != (size_t)size)
    return fail_with("read " + std::to_string(got) + " of " + std::to_string(size) + " bytes: " +
                     (std::ferror(f.get()) ? std::strerror(errno) : "file shrank while reading"));
  return true;
}

ImageFolderDataset::ImageFolderDataset(const std::string& root, const DecodeLimits& limits)
    : root_(root), limits_(limits) {
  std::error_code ec;
  if (!fs::exists(root, ec)) fail("ImageFolder root ", root, " does not exist; ", kLayout);
  if (!fs::is_directory(root, ec)) fail("ImageFolder root ", root, " is not a folder; ", kLayout);

  // Class folders: every sub-folder (symlinked ones included), as torchvision takes them.
  fs::directory_iterator it(root, ec), end;
  if (ec) fail("cannot list ImageFolder root ", root, ": ", ec.message());
  size_t loose_images = 0;
  for (; it != end; it.increment(ec)) {
    if (ec) fail("cannot list ImageFolder root ", root, ": ", ec.message());
    std::error_code ec2;
    if (it->is_directory(ec2)) class_names_.push_back(it->path().filename().string());
    else if (has_image_extension(it->path())) ++loose_images;
  }
  if (class_names_.empty()) {
    if (loose_images)
      fail("ImageFolder root ", root, " holds ", loose_images, " images but no class folders; ", kLayout,
           " (point it at the folder above)");
    fail("ImageFolder root ", root, " holds no class folders; ", kLayout);
  }
  std::sort(class_names_.begin(), class_names_.end());

  for (size_t c = 0; c < class_names_.size(); ++c) {
    fs::path class_dir = fs::path(root) / class_names_[c];
    auto images = list_images(root, class_dir);
    if (images.empty())
      fail("ImageFolder class folder ", class_dir.string(), " holds no images; expected files ending in .jpg, "
           ".jpeg, .png, .ppm, .bmp, .pgm, .tif, .tiff or .webp (any case)");
    for (auto& [dir, file] : images) {
      files_.push_back((fs::path(dir) / file).string());
      labels_.push_back((int32_t)c);
    }
  }
}

int ImageFolderDataset::label(int64_t i) const {
  MOCO_CHECK(i >= 0 && i < size(), name(), ": index ", i, " outside [0, ", size(), ")");
  return labels_[(size_t)i];
}

std::string ImageFolderDataset::source(int64_t i) const {
  MOCO_CHECK(i >= 0 && i < size(), name(), ": index ", i, " outside [0, ", size(), ")");
  return (fs::path(root_) / files_[(size_t)i]).string();
}

bool ImageFolderDataset::load(int64_t i, Image& out, std::string* why) const {
  std::string path = source(i);
  std::vector<uint8_t> bytes;  // (file size) the encoded file
  if (!read_file(path, bytes, limits_.max_bytes, why)) return false;
  return decode_image(bytes.data(), bytes.size(), out, why, limits_);
}

}  // namespace moco
