#!/usr/bin/env bash
# Overhead of the libos ptrace platform (docs/performance.md): static
# workloads natively, under a host that does not trace them, and on the
# ptrace platform, interleaved in rounds so that load changes hit every
# variant alike. Wall time of each run by /usr/bin/time; medians and
# ratios at the end.
#
#   tests/static/ptracebench.sh [ROUNDS]      (default 12)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-12}
make -s bin/forkless-tiny
gcc -O2 -Wall -Wextra -Werror -static -pthread -o bin/forkless-static tests/static/static.c
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/ptrace.test" ./libos/ptrace
host="$work/ptrace.test __ptrace-test-host"
times="$work/times"
run() { # label command...
	/usr/bin/time -f "$1 %e" -a -o "$times" "${@:2}" >/dev/null
}
for _ in $(seq "$rounds"); do
	for w in "spawn:spawnloop 3000 bin/forkless-tiny" "fork:forkloop 3000 bin/forkless-tiny" "syscalls:syscalls 3000000"; do
		name=${w%%:*} args=${w#*:}
		# shellcheck disable=SC2086
		{
			run "$name native" bin/forkless-static $args
			[ "$name" = syscalls ] && run "$name allow-all" bin/forkless-static $args allow-all
			run "$name host" $host -untraced bin/forkless-static $args
			run "$name ptrace" $host bin/forkless-static $args
		}
	done
done
python3 - "$times" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    w, v, t = line.split()
    d[w, v].append(float(t))
for w in ['spawn', 'fork', 'syscalls']:
    base = statistics.median(d[w, 'native'])
    for (ww, v), ts in d.items():
        if ww == w:
            m = statistics.median(ts)
            print(f'{w:9} {v:10} n={len(ts):2} median {m:6.2f} s  min {min(ts):6.2f} s  median/native {m / base:.2f}')
PY
