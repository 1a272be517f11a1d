"""data.mapping wherever a draw is compared (issue 17): config errors name the field, `mod` leaves every dump and
payload as it was, and window payloads, canaries, the coordinator's recomputation of answers, scoring, the
ranking's confirmation, `verify_seed` and synth all read the draws through the mapping."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from cluster.errors import ConfigError
from cluster.scheduler.types import AnswerRejected
from pipeline.prng import answers, canary
from pipeline.prng.data import DataSpec, load_history, parse_history
from pipeline.prng.mappings import library as lib
from pipeline.prng.scoring import SCORER_DEFAULTS, score_job
from pipeline.prng.sieve import SieveSpec, SieveSpecError
from pipeline.prng.synth import main as synth_main
from pipeline.prng.synth import make_history, planted_values
from pipeline.prng.verdict import verify_seed
from pipeline.prng.windows import block_tasks, sieve_payloads, window_batch_job, window_specs
from pipeline.prng.workload import PrngWorkload

VECTORS = json.loads((Path(__file__).parents[1] / "fixtures/mappings/vectors.json").read_text())["mappings"]
SEED = 1234


def entries(draws: list[int]) -> list[dict[str, object]]:
    """History entries with one distinct date each (the loader refuses repeated or backward dates)."""
    day0 = dt.date(2000, 1, 1)
    return [{"date": (day0 + dt.timedelta(days=i)).isoformat(), "session": "s", "draw": d} for i, d in enumerate(draws)]


def parse(**data: object) -> DataSpec:
    return PrngWorkload.parse_data(data, "pipeline.yaml: data")


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"mapping": "nope"}, ["data: mapping:", "unknown mapping 'nope'", "java_next_int"]),
        ({"generator": "mt19937", "mapping": "java_next_int"}, ["data: mapping:", "not mt19937", "fix: set the "
                                                                "generator to java_lcg", "numpy_randint"]),
        ({"generator": "mt19937", "mapping": "python_randrange"}, ["data: mapping:", "python_mt19937"]),
        ({"generator": "php_mt_rand", "mapping": "php_mt_rand"}, ["data: mapping:", "not php_mt_rand", "mt19937"]),
        ({"mapping": "java_next_int", "modulus": 1 << 31}, ["data: mapping:", "at most 2147483647"]),
        ({"mapping": "java_next_int", "skip_mode": "variable"}, ["data: mapping:", "fixed skips only", "mod"]),
        ({"generator": "python_mt19937", "skip_mode": "variable"}, ["data: skip_mode:", "fixed skips only"]),
        ({"draw_low": "1"}, ["data: draw_low:"]),
    ],
)  # fmt: skip
def test_bad_mapping_config_is_one_line_naming_the_field(data: dict[str, object], words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse(**data)
    text = str(err.value)
    assert "\n" not in text
    for word in words:
        assert word in text, text


def test_draw_outside_the_range_names_draw_low_and_modulus(tmp_path: Path) -> None:
    rows = [{"date": f"2024-01-0{i + 1}", "session": "s", "draw": v} for i, v in enumerate((1, 1000, 0))]
    with pytest.raises(ConfigError) as err:
        parse_history(rows, "h.json", 1000, low=1)
    text = str(err.value)
    assert "\n" not in text and "entry [2].draw must be an integer 1-1000" in text and "data.draw_low (1)" in text
    assert "data.modulus (1000)" in text
    path = tmp_path / "h.json"
    path.write_text(json.dumps(rows[:2]))
    assert load_history(path, 1000, low=1).draws == (0, 999)  # kept as value - draw_low


def test_mod_and_zero_low_leave_the_dump_and_every_payload_unchanged() -> None:
    plain, same = DataSpec(), DataSpec(mapping="mod", draw_low=0)
    assert plain.model_dump_json() == same.model_dump_json()
    assert "mapping" not in plain.model_dump() and "draw_low" not in plain.model_dump()
    mapped = DataSpec(mapping="java_next_int", draw_low=1)
    assert mapped.model_dump()["mapping"] == "java_next_int" and mapped.model_dump()["draw_low"] == 1
    forward, reverse = window_specs(plain, list(range(20)), 8, 1.0, 3)
    assert "mapping" not in forward and "mapping" not in reverse
    assert "mapping" not in SieveSpec.from_dict(forward).to_dict()
    forward, reverse = window_specs(mapped, list(range(20)), 8, 1.0, 3)
    assert forward["mapping"] == reverse["mapping"] == "java_next_int"
    spec = SieveSpec.from_dict(forward)
    assert spec.mapped and SieveSpec.from_dict(spec.to_dict()) == spec


def test_sieve_spec_refuses_a_bad_mapping_naming_it() -> None:
    with pytest.raises(SieveSpecError, match=r"spec.mapping='java_next_int': .*not mt19937"):
        SieveSpec("mt19937", (1, 2), 1.0, mapping="java_next_int")
    with pytest.raises(SieveSpecError, match="unknown mapping"):
        SieveSpec("java_lcg", (1, 2), 1.0, mapping="randint")
    assert SieveSpec("python_mt19937", (1,), 1.0).mapped  # its seeding is only on the mapped paths
    assert not SieveSpec("mt19937", (1,), 1.0).mapped


def _mapped_data() -> tuple[DataSpec, list[int]]:
    data = DataSpec(generator="java_lcg", mapping="java_next_int", seed_range=(0, 4096), offset_range=(0, 1),
                    skip_range=(0, 0))  # fmt: skip
    return data, planted_values("java_lcg", SEED, 40, 1, 0, 1000, "java_next_int")


def _worker(payload: dict) -> dict:
    return {"ok": True, "kind": "window_batch", **window_batch_job(payload)}


def test_canary_and_recomputation_go_through_the_mapping() -> None:
    data, draws = _mapped_data()
    train = draws[:32]
    payload = sieve_payloads(block_tasks(data, train, 8, 1.0, 0, 4096), 2)[0]
    sealed, planted = canary.plant(payload)
    assert planted is not None
    task = next(t for t in sealed["tasks"] if t["tag"] == planted["tag"])
    assert task["forward"]["mapping"] == "java_next_int"
    forward = SieveSpec.from_dict(task["forward"])  # the canary's window is its seed's nextInt draws
    assert lib.reference_score(forward, planted["seed"]) == (0, 8)
    history = parse_history(entries(draws), "h")
    answer = answers.check(sealed, _worker(sealed), history, planted)
    found = {s for t in answer["tasks"] for s, *_ in t["survivors"]}
    assert found == {SEED} and all(t["tag"] != planted["tag"] for t in answer["tasks"])
    # a stale worker that reduces raw outputs mod n finds neither the seed nor the canary
    stale = {**sealed, "tasks": [{**t, "forward": {k: v for k, v in t["forward"].items() if k != "mapping"},
                                  "reverse": {k: v for k, v in t["reverse"].items() if k != "mapping"}}
                                 for t in sealed["tasks"]]}  # fmt: skip
    with pytest.raises(AnswerRejected) as err:
        answers.check(sealed, _worker(stale), history, planted)
    assert err.value.kind == "canary"
    # a survivor claimed with the raw-output reading is not believed
    forged = _worker(sealed)
    for t in forged["tasks"]:
        if t["tag"] != planted["tag"]:
            t["survivors"] = [[SEED + 1, 0, 8, 8]]
            t["forward_count"] = 1
    with pytest.raises(AnswerRejected) as err:
        answers.check(sealed, forged, history, planted)
    assert err.value.kind == "unverified"


def test_scores_and_their_check_go_through_the_mapping(tmp_path: Path) -> None:
    _, draws = _mapped_data()
    path = tmp_path / "train.json"
    path.write_text(json.dumps(entries(draws)))
    history = parse_history(json.loads(path.read_text()), "h")
    job = {"kind": "score", "generator": "java_lcg", "modulus": 1000, "mapping": "java_next_int",
           "history_file": str(path), "first_index": 0, "survivors": [[SEED, 0, 1], [7, 0, 1]],
           "param_sets": [SCORER_DEFAULTS]}  # fmt: skip
    got = score_job(job)
    assert got["exact"][0] == 1.0 and got["exact"][1] < 0.2
    assert score_job({k: v for k, v in job.items() if k != "mapping"})["exact"][0] < 0.2  # mod: no match
    sealed, planted = canary.plant(job)
    answer = {"ok": True, "kind": "score", **score_job(sealed)}
    assert answers.check(sealed, answer, history, planted)["exact"] == got["exact"]
    # the coordinator's own arithmetic reads the job's mapping: the raw-output reading is what it refutes
    ((value, exact),) = answers._local_scores(job, SEED, 0, 1, list(history.draws), 0, [SCORER_DEFAULTS])
    assert (value, exact) == (1.0, 1.0)
    plain = {k: v for k, v in job.items() if k != "mapping"}
    assert answers._local_scores(plain, SEED, 0, 1, list(history.draws), 0, [SCORER_DEFAULTS])[0][1] < 0.2
    rows = [{"seed": SEED, "skip": 0, "offset": 1, "train_score": 0.0, "train_match": 0.0, "holdout_score": 0.0,
             "holdout_match": 0.0}]  # fmt: skip
    (row,) = answers.confirm_ranking("java_lcg", 1000, history, 32, rows, dict(SCORER_DEFAULTS), "java_next_int")
    assert row["confirmed"] is False and row["train_match"] == row["holdout_match"] == 1.0


def test_verify_seed_reads_the_draws_through_the_mapping() -> None:
    _, draws = _mapped_data()
    got = verify_seed("java_lcg", SEED, draws, 32, 1000, offsets=[0, 1, 2], mapping="java_next_int")
    assert got["reproduces"] and got["offset"] == 1 and got["matches"] == 40
    assert not verify_seed("java_lcg", SEED, draws, 32, 1000, offsets=[0, 1, 2])["reproduces"]
    assert lib.chance_per_draw("numpy_randint", 600) == 1 / 600


def test_synth_plants_library_calls_and_the_low(tmp_path: Path) -> None:
    records = make_history("java_lcg", 12345, 40, mapping="java_next_int", low=1)
    assert [r["draw"] - 1 for r in records] == VECTORS["java_nextint_bound"]["draws"]["12345"]
    records = make_history("mt19937", 12345, 40, mapping="numpy_randint")
    assert [r["draw"] for r in records] == VECTORS["numpy_randint"]["draws"]["12345"]
    out = tmp_path / "h.json"
    args = ["--generator", "python_mt19937", "--seed", "5489", "--draws", "40", "--mapping", "python_randrange",
            "--draw-low", "10", "--out", str(out)]  # fmt: skip
    assert synth_main(args) == 0
    assert [r["draw"] - 10 for r in json.loads(out.read_text())] == VECTORS["python_randrange"]["draws"]["5489"]
    truth = json.loads(Path(f"{out}.truth.json").read_text())
    assert truth["mapping"] == "python_randrange" and truth["draw_low"] == 10
    assert synth_main(["--generator", "mt19937", "--seed", "1", "--draws", "5", "--mapping", "java_next_int",
                       "--out", str(out)]) == 2  # fmt: skip
