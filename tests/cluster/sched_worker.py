"""A stand-in for `python -m pipeline.worker` in scheduler tests: stdlib only (runs under `python -S`).

Reads one JSON job on stdin and prints one JSON line, like the real worker, but does only what the
payload asks, so tests can inject faults per slot or node without the real sieve:
  value        int: the result is derived from it deterministically ("survivors")
  sleep        seconds to sleep first (fixed work for the benchmark)
  log          file to append "chunk_id slot attempt" to at start (counts executions)
  fault_dir    if <fault_dir>/<node>:<gpu> exists, fail like a dying GPU (exit 1, HIP error on stderr)
  fail_nodes   node names on which to fail (exit 3); fail_slots the same for "node:gpu" slots
  down_dir     if <down_dir>/<node> exists, fail like an unreachable node (exit 255)
  hang_slots   "node:gpu" slots on which to hang for hang_s seconds (a rig that stopped answering)
  flaky        {"dir": path, "every": n}: per node, every n-th command fails (exit 4)
  file_dir     also leave the survivors in a file there and name it in "survivors_file"
  bad_output / ok_false / bad_spec   answer with garbage / {"ok": false} / exit 2 with an error
"""

import fcntl
import json
import os
import sys
import time


def _count(path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        n = len(fh.read()) + 1
        fh.write("x")
        return n


def main():
    job = json.loads(sys.stdin.read())
    slot = os.environ.get("WATCHER_SLOT", "?:?")
    node = slot.rsplit(":", 1)[0]
    attempt = os.environ.get("WATCHER_ATTEMPT", "?")
    chunk = os.environ.get("WATCHER_CHUNK_ID", "?")
    if job.get("log"):
        with open(job["log"], "a") as fh:
            fh.write(f"{chunk} {slot} {attempt}\n")
    if job.get("sleep"):
        time.sleep(float(job["sleep"]))
    if job.get("bad_spec"):
        print(json.dumps({"ok": False, "error": "bad spec: 'value' must be an int"}))
        return 2
    if job.get("down_dir") and os.path.exists(os.path.join(job["down_dir"], node)):
        sys.stderr.write(f"ssh: connect to host {node} port 22: Connection refused\n")
        return 255
    if slot in job.get("hang_slots", []):
        time.sleep(float(job.get("hang_s", 30)))
    if slot in job.get("fail_slots", []):
        sys.stderr.write(f"simulated failure on {slot}\n")
        return 3
    fault_dir = job.get("fault_dir")
    if fault_dir and os.path.exists(os.path.join(fault_dir, slot)):
        sys.stderr.write(f"HIP error: hipErrorLaunchFailure on device {slot}\nmemory access fault\n")
        return 1
    if node in job.get("fail_nodes", []):
        sys.stderr.write(f"simulated failure on node {node}\n")
        return 3
    flaky = job.get("flaky")
    if (
        flaky
        and node in flaky.get("nodes", [node])
        and _count(os.path.join(flaky["dir"], node)) % int(flaky["every"]) == 0
    ):
        sys.stderr.write(f"flaky failure on {node} (attempt {attempt})\nTraceback: RuntimeError: flaky\n")
        return 4
    if job.get("bad_output"):
        print("this is not json")
        return 0
    if job.get("ok_false"):
        print(json.dumps({"ok": False, "error": "kernel returned garbage"}))
        return 0
    value = int(job.get("value", 0))
    survivors = [s for s in range(value * 10, value * 10 + 10) if (s * 2654435761) % 7 == 0]
    answer = {"ok": True, "value": value, "survivors": survivors, "seeds_tested": 10, "slot": slot}
    if job.get("file_dir"):  # like the real worker's large results: left in a file on the node
        path = os.path.join(job["file_dir"], f"survivors-{chunk}.json")
        with open(path, "w") as fh:
            json.dump({"survivors": survivors}, fh)
        answer["survivors_file"] = path
    print("some noise on stdout before the answer")
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
