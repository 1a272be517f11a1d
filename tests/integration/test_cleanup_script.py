"""scripts/cleanup_gpus.sh on a fake rig: dry run, healthy run, faulted GPU named with exit 3."""

from __future__ import annotations

import fakerig
import pytest

from cluster.gpu.cleanup import cleanup_node
from cluster.transport import executor_for

pytestmark = pytest.mark.integration


def test_cleanup_script_on_a_rig(rigs) -> None:
    (rig,) = rigs(1, gpus=3)
    ex = executor_for(rig.node_config(), fakerig.cluster_config([rig]).timeouts)
    script = str(fakerig.REPO_ROOT / "scripts" / "cleanup_gpus.sh")
    dry = ex.run(["bash", script, "--dry-run"])
    assert dry.exit_code == 0 and "would run: rocm-smi --resetclocks" in dry.stdout
    assert rig.rocm_smi_calls() == [], "a dry run must not touch the GPUs"
    ok = ex.run(["bash", script])
    assert ok.exit_code == 0 and "cleanup: ok" in ok.stdout, ok.stdout + ok.stderr
    rig.set_gpu(1, "eio")
    bad = ex.run(["bash", script])
    assert bad.exit_code == 3
    assert "FAULTED gpu=1 reason=" in bad.stdout and "KERNEL" in bad.stdout  # SMU line since the last cleanup
    found = cleanup_node(ex, script=script)
    assert [(g.node, g.index, g.status.value) for g in found] == [(rig.name, 1, "faulted")]
    ex.close()
