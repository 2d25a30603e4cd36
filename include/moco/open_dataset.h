// Opening a data set by what the user typed: an empty DATA is Fashion-MNIST (the embedded default, from
// Debian's dataset-fashion-mnist); otherwise an ImageFolder root, whose train/ and val/ folders are the two
// splits when they exist (ImageNet's layout), else the root itself is the train split.
#pragma once
#include <memory>
#include <string>

#include "moco/data.h"

namespace moco {

// split: "train" or "test" (ImageFolder: train/ and val/ under the root).
std::unique_ptr<Dataset> open_dataset(const std::string& root, const std::string& split);
// The check open_dataset makes before reading anything (a non-empty root is a folder), for a caller that
// wants a mistyped DATA reported before slower set-up.
void check_data_root(const std::string& root);

}  // namespace moco
