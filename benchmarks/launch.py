"""Run one command and write its wall time and rusage as JSON: ``launch.py OUT.json CMD ...``.

Why a separate small process: Linux charges a child's ``ru_maxrss`` with the high-water RSS
of the process it was spawned from (the exec records the old address space's peak), so a
child started straight from the benchmark runner, which holds tens of MB of its own, would
report the runner's size whenever it is the larger. Started from this ~10 MB launcher, the
child's peak RSS is its own. Standard library only; run it with ``python -S``.
"""

import json
import os
import sys
import time


def main() -> int:
    out, cmd = sys.argv[1], sys.argv[2:]
    began = time.monotonic()
    pid = os.posix_spawnp(cmd[0], cmd, os.environ)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - began
    result = {
        "wall_s": wall,
        "user_s": usage.ru_utime,
        "sys_s": usage.ru_stime,
        "maxrss_kib": usage.ru_maxrss,
        "exit_code": os.waitstatus_to_exitcode(status),
    }
    with open(out, "w") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
