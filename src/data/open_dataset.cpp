#include "moco/open_dataset.h"

#include <sys/stat.h>

#include "moco/error.h"

namespace moco {

static bool is_dir(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

void check_data_root(const std::string& root) {
  MOCO_CHECK(root.empty() || is_dir(root), "data path ", root, " is not a folder; expected an ImageFolder root ",
             "(root/<class>/*.jpg or root/train/<class>/*.jpg), or omit DATA to use Fashion-MNIST");
}

std::unique_ptr<Dataset> open_dataset(const std::string& root, const std::string& split) {
  MOCO_CHECK(split == "train" || split == "test", "split must be train or test, got '", split, "'");
  if (root.empty()) return std::make_unique<IdxDataset>(fashion_mnist(split));
  check_data_root(root);
  const std::string sub = root + (split == "train" ? "/train" : "/val");
  if (is_dir(sub)) return std::make_unique<ImageFolderDataset>(sub);
  MOCO_CHECK(split == "train", "data path ", root, " has no val/ folder for evaluation; expected ", sub);
  return std::make_unique<ImageFolderDataset>(root);
}

}  // namespace moco
