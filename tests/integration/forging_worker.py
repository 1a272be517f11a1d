"""A worker that lies: the real `python -m pipeline.worker`, behind a proxy that rewrites its answers.

A local node whose `python` is tests/integration/liar-python runs this instead of Python; it starts the
real interpreter with the same arguments, passes stdin through, and changes what comes back according
to WATCHER_FORGE (set in the node's env), only on slots whose WATCHER_SLOT ends with WATCHER_FORGE_SLOT
when that is set. Modes:
  survivor  adds a survivor inside the block, with consistent counts, that does not reproduce, and
            scores every survivor 1.0
  types     survivors with seed -5, 2**40 and "x"
  tag       a tag that was never sent
  no_tasks  the answer without its `tasks`
  silent    a GPU whose generator output has a flipped bit: no window matches, so it reports no
            survivors, without crashing
  flood     200 MB of stdout before the answer and 20 MB of stderr per answer, with ANSI/OSC escapes
            and rich markup in it
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

MODE = os.environ.get("WATCHER_FORGE", "")
ACTIVE = os.environ.get("WATCHER_SLOT", "").endswith(os.environ.get("WATCHER_FORGE_SLOT", ""))
NASTY = "\x1b[31mRED\x1b[0m \x1b]0;owned\x07 [/x] [drm:amdgpu_job_timedout] [bold]not bold[/bold]"


def forge(answer: dict) -> dict:
    if not ACTIVE or not answer.get("ok"):
        return answer
    if answer.get("kind") == "window_batch":
        tasks = answer.get("tasks", [])
        if MODE == "no_tasks":
            answer.pop("tasks", None)
        for task in tasks:
            if MODE == "survivor":  # consistent counts, so only recomputing it can tell
                task["survivors"].append([int(task.get("start_hint", 0)) + 1, 1, 1, 1])
                task["forward_count"] += 1
            elif MODE == "types":
                task["survivors"] += [[-5, 0, 9, 9], [2**40, 0, 9, 9], ["x", 0, 9, 9]]
            elif MODE == "tag":
                task["tag"] = ["never", "sent"]
            elif MODE == "silent":
                task["forward_count"], task["survivors"] = 0, []
    if answer.get("kind") == "score" and MODE == "survivor":
        answer["scores"] = [[1.0] * len(row) for row in answer["scores"]]
        answer["exact"] = [1.0] * len(answer["exact"])
    return answer


def main() -> int:
    child = subprocess.Popen([sys.executable, *sys.argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    starts: dict[int, int] = {}

    def pump_in() -> None:
        for line in sys.stdin:
            try:
                envelope = json.loads(line)
                for i, task in enumerate(envelope["job"].get("tasks", [])):
                    starts[i] = int(task["start"])
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
            child.stdin.write(line)
            child.stdin.flush()
        child.stdin.close()

    threading.Thread(target=pump_in, daemon=True).start()
    for line in child.stdout:
        frame = json.loads(line) if line.startswith("{") else None
        if frame is not None and "done" in frame and ACTIVE:
            last = frame["stdout"].strip().splitlines()[-1]
            answer = json.loads(last)
            for i, task in enumerate(answer.get("tasks", [])):
                task["start_hint"] = starts.get(i, 0)
            answer = forge(answer)
            for task in answer.get("tasks", []) if isinstance(answer.get("tasks"), list) else []:
                task.pop("start_hint", None)
            frame["stdout"] = json.dumps(answer) + "\n"
            if MODE == "flood":
                sys.stderr.write((NASTY + "\n") * (20 * 1024 * 1024 // (len(NASTY) + 1)))
                sys.stderr.flush()
                block = ("A" * 1023 + NASTY) * 1024  # ~1 MB, no newline: one enormous line
                for _ in range(200):
                    sys.stdout.write(block)
                sys.stdout.write("\n")
            line = json.dumps(frame) + "\n"
        sys.stdout.write(line)
        sys.stdout.flush()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
