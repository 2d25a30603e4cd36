# Sourced by the CLI test scripts: the data of a small training run, in the array `data` (train's DATA
# argument): empty for Fashion-MNIST (moco's default) where it is installed, else the small ImageFolder of the
# GPU scripts written into $1. Exits 77 (skipped) with neither.
#   source "$(dirname "$0")/train_data.sh" "$dir/data"
root=${MOCO_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
data=()
if [ ! -f "$root/train-images-idx3-ubyte.gz" ]; then
  python3 "$(dirname "${BASH_SOURCE[0]}")/write_test_images.py" "$1" 2>/dev/null ||
    { echo "neither Fashion-MNIST nor python3 to write images: skipped"; exit 77; }
  data=("$1")  # 64 images: 2 steps of 32 an epoch
fi
