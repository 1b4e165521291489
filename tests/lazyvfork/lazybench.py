"""Lazy vfork against glibc's vfork: vfork+exec of the tiny target from
three C hosts (forkless-cbench) holding 16 MiB, interleaved in rounds:
no preload (glibc's vfork), lib/libforkless.so (lazy vfork), and the
library with FORKLESS_VFORK=real. Run from the repository root after
`make`:  python3 tests/lazyvfork/lazybench.py ROUNDS
Each round runs 50 vfork+exec per host; prints medians, p10 and minimums
in microseconds and the ratios to glibc's vfork."""
import subprocess, statistics, sys, os
tiny = os.path.abspath("bin/forkless-tiny"); cb = os.path.abspath("bin/forkless-cbench")
lib = os.path.abspath("lib/libforkless.so")
def host(env):
    e = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}; e.update(env)
    return subprocess.Popen([cb, "16"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=e)
hosts = {"glibc vfork": host({}), "lazy vfork": host({"LD_PRELOAD": lib}), "lazy real (FORKLESS_VFORK=real)": host({"LD_PRELOAD": lib, "FORKLESS_VFORK": "real"})}
res = {k: [] for k in hosts}
for r in range(int(sys.argv[1])):
    for k, h in hosts.items():
        h.stdin.write(f"vfork {tiny} 50\n"); h.stdin.flush()
        line = h.stdout.readline().split()
        if line[0] == "error": raise SystemExit(" ".join(line))
        res[k] += [int(x) / 1000 for x in line]
base = statistics.median(res["glibc vfork"])
for k, v in res.items():
    v.sort(); n = len(v)
    print(f"{k:34s} n={n} p50={statistics.median(v):7.1f} p10={v[n//10]:7.1f} min={v[0]:7.1f} ratio(p50)={statistics.median(v)/base:.2f} ratio(p10)={v[n//10]/res['glibc vfork'][len(res['glibc vfork'])//10]:.2f}")
