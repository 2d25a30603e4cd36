# Sourced by CLI tests that call `moco` many times: source "$(dirname "$0")/moco_calls.sh" MOCO_BINARY
# It sets $moco (the binary), $dir (a scratch folder, removed at exit) and ${data[@]} (train_data.sh: the
# DATA argument, Fashion-MNIST or a small ImageFolder), and defines, each call's output landing in $dir/out
# and $dir/err:
#   fail MESSAGE...           prints FAIL: MESSAGE and exits 1
#   run ARGS...               runs moco ARGS, which must succeed (its output is shown when it does not)
#   expect_error PART ARGS... runs moco ARGS, which must fail with PART in its error, and echoes the error
moco=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/train_data.sh" "$dir/data"
fail() { echo "FAIL: $*"; exit 1; }
run() { "$moco" "$@" >"$dir/out" 2>"$dir/err" || { cat "$dir/out" "$dir/err"; fail "moco $*"; }; }
expect_error() {
  local want=$1
  shift
  if "$moco" "$@" >"$dir/out" 2>"$dir/err"; then fail "moco $* succeeded; wanted an error with \"$want\""; fi
  grep -qF -- "$want" "$dir/err" || { cat "$dir/err"; fail "moco $*: no \"$want\" in the error"; }
  echo "ok: refused: $(head -c 160 "$dir/err")"
}
