// Python's round() for the augmentation geometry: halves go to the even neighbour. torchvision computes crop
// sides and centre-crop offsets with it, and the exact boxes are part of the recipes' contract.
#pragma once
#include <cmath>

namespace moco {

inline int py_round(double x) {
  double r = std::floor(x);
  double frac = x - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;
  return (int)r;
}

}  // namespace moco
