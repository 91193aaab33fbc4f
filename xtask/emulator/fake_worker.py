#!/usr/bin/env python3
"""A stand-in for `starburst-worker` in the emulator's tests, steered by its environment.

FAKE_ENV_OUT=<file>   write the environment as JSON          FAKE_PID_OUT=<file>  write "<pid> [<child pid>]"
FAKE_META_OUT=<file>  write ECS_CONTAINER_METADATA_URI_V4/task FAKE_LINES=<n>      print n lines (+1 on stderr)
FAKE_CHILD=1          start a child process in its own group  FAKE_EXIT=<code>    exit with code (else sleep)
FAKE_ON_TERM=exit:<code>|ignore  what to do on SIGTERM (default: die by the signal)
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request


def write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    env = os.environ
    on_term = env.get("FAKE_ON_TERM", "")
    if on_term == "ignore":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    elif on_term.startswith("exit:"):
        code = int(on_term[5:])
        signal.signal(signal.SIGTERM, lambda *_: os._exit(code))
    for i in range(int(env.get("FAKE_LINES", "0"))):
        print(f"fake worker line {i}", flush=True)
    if env.get("FAKE_LINES"):
        print("fake worker stderr line", file=sys.stderr, flush=True)
    if env.get("FAKE_ENV_OUT"):
        write(env["FAKE_ENV_OUT"], json.dumps(dict(env)))
    if env.get("FAKE_META_OUT"):
        with urllib.request.urlopen(env["ECS_CONTAINER_METADATA_URI_V4"] + "/task") as r:
            write(env["FAKE_META_OUT"], r.read().decode())
    pids = [os.getpid()]
    if env.get("FAKE_CHILD"):
        # like R started by the worker: same process group, outlives nothing by itself
        pids.append(subprocess.Popen(["sleep", "300"]).pid)
    if env.get("FAKE_PID_OUT"):
        write(env["FAKE_PID_OUT"], " ".join(map(str, pids)))
    if "FAKE_EXIT" in env:
        sys.exit(int(env["FAKE_EXIT"]))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
