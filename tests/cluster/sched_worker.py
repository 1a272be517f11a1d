"""A stand-in for `python -m pipeline.worker` in scheduler tests: stdlib only (runs under `python -S`).

Reads one JSON job on stdin and prints one JSON line, like the real worker, but does only what the
payload asks, so tests can inject faults per slot or node without the real sieve:
  value        int: the result is derived from it deterministically ("survivors")
  sleep        seconds to sleep first (fixed work for the benchmark; default 0.05)
  log          file to append "chunk_id slot attempt" to at start (counts executions)
  fault_dir    if <fault_dir>/<node>:<gpu> exists, fail like a dying GPU (exit 1, HIP error on stderr)
  fail_nodes   node names on which to fail (exit 3); fail_slots the same for "node:gpu" slots
  down_dir     if <down_dir>/<node> exists, fail like an unreachable node (exit 255)
  hang_slots   "node:gpu" slots on which to hang for hang_s seconds (a rig that stopped answering)
  flaky        {"dir": path, "every": n}: per node, every n-th command fails (exit 4)
  file_dir     also leave the survivors in a file there and name it in "survivors_file"
  bad_output / ok_false / bad_spec   answer with garbage / {"ok": false} / exit 2 with an error
  protocol_garbage   (serve mode) write a non-protocol line straight to the protocol stream
  die_slots    "node:gpu" slots on which the worker dies mid-chunk (os._exit(9), "dying on SLOT" on stderr)
  stop_slots   "node:gpu" slots on which the worker stops itself mid-chunk (SIGSTOP: a hung GPU driver call)
  fake_rss     (serve mode) the resident size to report, in bytes

`--serve` speaks the slot-worker protocol of pipeline.worker (hello, envelopes, frames, heartbeats, and on
Linux PR_SET_PDEATHSIG: it dies with the thread that started it, as the real worker does, so a scheduler
that starts workers from a short-lived thread is caught here), with the same answers per job;
SCHED_WORKER_VERSION overrides the version it reports (default: the version the coordinator announced in
WATCHER_COORDINATOR_VERSION), in the hello and in every answer, SCHED_WORKER_PROTOCOL the protocol number
it says (default 1) and SCHED_WORKER_MEM_TOTAL its machine's memory.
"""

import fcntl
import io
import json
import os
import queue
import signal
import sys
import threading
import time


def _count(path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.seek(0)
        n = len(fh.read()) + 1
        fh.write("x")
        return n


def main():
    if "--serve" in sys.argv[1:]:
        return serve()
    return run_job(json.loads(sys.stdin.read()))


def die_with_parent():
    """Like pipeline.worker.die_with_parent: the kernel SIGKILLs this process when the thread that started it
    ends (the 'parent' of PR_SET_PDEATHSIG is a thread, not a process)."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def serve():
    ppid = os.getppid()
    die_with_parent()
    if os.getppid() != ppid:
        return 1
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    lock = threading.Lock()
    state = {"busy": None, "fake_rss": 0}

    def send(message):
        with lock:
            proto.write(json.dumps(message) + "\n")
            proto.flush()

    def heartbeat():
        interval = max(0.05, float(os.environ.get("WATCHER_HEARTBEAT_S", "2")))
        while True:
            time.sleep(interval)
            busy = state["busy"]
            send(
                {
                    "heartbeat": True,
                    "progress": 0,
                    "elapsed": time.monotonic() - busy if busy else 0.0,
                    "busy": busy is not None,
                }
            )

    lines = queue.Queue()

    def read_stdin():
        for raw in sys.stdin.buffer:
            lines.put(raw)
        os._exit(0)

    version = worker_version()
    mem_total = int(os.environ.get("SCHED_WORKER_MEM_TOTAL", "0") or 0)
    send(
        {
            "hello": True,
            "version": version,
            "pid": os.getpid(),
            "pgid": os.getpgrp(),
            "mem_total": mem_total,
            "protocol": int(os.environ.get("SCHED_WORKER_PROTOCOL", "1")),
        }
    )
    threading.Thread(target=heartbeat, daemon=True).start()
    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        envelope = json.loads(lines.get())
        os.environ["WATCHER_CHUNK_ID"] = str(envelope["chunk_id"])
        os.environ["WATCHER_ATTEMPT"] = str(envelope["attempt"])
        job = envelope["job"]
        if job.get("protocol_garbage"):
            with lock:
                proto.write("garbage on the protocol stream\n")
                proto.flush()
            continue
        captured = io.StringIO()
        sys.stdout = captured
        state["busy"] = time.monotonic()
        try:
            code = run_job(job)
        finally:
            sys.stdout = sys.stderr
            state["busy"] = None
        sys.stderr.write(f"\x1fwatcher-done {envelope['seq']}\n")
        sys.stderr.flush()
        send({"done": envelope["seq"], "exit": code, "stdout": captured.getvalue(), "rss": int(job.get("fake_rss", 0))})


def worker_version():
    return os.environ.get("SCHED_WORKER_VERSION") or os.environ.get("WATCHER_COORDINATOR_VERSION", "0+unknown")


def run_job(job):
    slot = os.environ.get("WATCHER_SLOT", "?:?")
    node = slot.rsplit(":", 1)[0]
    attempt = os.environ.get("WATCHER_ATTEMPT", "?")
    chunk = os.environ.get("WATCHER_CHUNK_ID", "?")
    if job.get("log"):
        with open(job["log"], "a") as fh:
            fh.write(f"{chunk} {slot} {attempt}\n")
    # a chunk is never instant (a real one is at least a kernel launch): without a little work, whichever
    # slot worker came up first would take every chunk and per-node fault switches would hardly fire
    time.sleep(float(job.get("sleep", 0.05)))
    if slot in job.get("die_slots", []):
        sys.stderr.write(f"dying on {slot}\n")
        sys.stderr.flush()
        os._exit(9)
    if slot in job.get("stop_slots", []):
        sys.stderr.write(f"stopping on {slot}\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGSTOP)
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
    answer = {
        "ok": True,
        "value": value,
        "survivors": survivors,
        "seeds_tested": 10,
        "slot": slot,
        "worker_version": worker_version(),
        "protocol": int(os.environ.get("SCHED_WORKER_PROTOCOL", "1")),
    }
    answer["pid"] = os.getpid()  # which process answered: a slot worker kept across calls answers with one pid
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
