#!/usr/bin/env bash
# A rank that dies (SIGKILL) or hangs mid-run ends the whole mpirun job with a non-zero status within a bound,
# never a silent hang, and the checkpoint rank 0 wrote before stays valid.
#   fault_tolerance.sh <mpiexec> <numproc flag> <moco_dist_fault> kill|hang|throw
# throw: rank 1 fails alone with an error; the error must reach the output (the rank prints it and exits
# rather than wait in MPI_Finalize for ranks that wait for it).
set -euo pipefail
mpiexec=$1 np_flag=$2 prog=$3 mode=$4
limit=60
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
export MOCO_COMM_TIMEOUT_S=3  # the watchdog: ranks waiting on the hung rank give up after 3 s

start=$(date +%s)
set +e
timeout $limit "$mpiexec" "$np_flag" 2 "$prog" "$mode" "$dir" >"$dir/out.txt" 2>&1
rc=$?
set -e
elapsed=$(( $(date +%s) - start ))
cat "$dir/out.txt"
echo "mpirun exited with status $rc after ${elapsed}s"
[ "$rc" -ne 124 ] || { echo "FAIL: the job hung (killed by timeout after ${limit}s)"; exit 1; }
[ "$rc" -ne 0 ] || { echo "FAIL: the job reported success although rank 1 failed"; exit 1; }
if [ "$mode" = throw ]; then
  grep -q "error: rank 1: an error of its own at step 3" "$dir/out.txt" ||
    { echo "FAIL: rank 1's error was not printed"; exit 1; }
fi
if [ "$mode" = hang ]; then
  grep -q "did not complete within 3 s" "$dir/out.txt" || { echo "FAIL: no watchdog error naming the timeout"; exit 1; }
fi
"$prog" verify "$dir"
