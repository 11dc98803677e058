"""Large training corpora: sharded, resumable, deterministic in their seeds, streamed in minibatches.

Each test works on a tiny corpus (6 tasks in shards of 3, about 0.05 s of
oracle time per task), made once per module and copied where a test damages it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from dlm_gym.datasets import (
    CORPUS_MANIFEST,
    SEED_RANGES,
    TIMING_ARRAYS,
    TIMING_META_KEYS,
    CorpusError,
    CorpusSpec,
    MissingExtraError,
    generate_corpus,
    import_ray,
    load_corpus,
    split_checksums,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--size", "6", "--shard-size", "3", "--no-progress"]


def _script(name: str):
    """An example script as a module, to call its main(argv) in this process."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GENERATE = _script("generate_dataset")


def _generate(path: Path, *extra: str) -> None:
    assert GENERATE.main(["--corpus", str(path), *TINY, *extra]) == 0


def _content(path: Path) -> dict:
    """Every array of a split file but the run-dependent ones, and its meta without timing."""
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files if k not in (*TIMING_ARRAYS, "checksum")}
    meta = json.loads(str(arrays.pop("meta")))
    return {"arrays": arrays, "meta": {k: v for k, v in meta.items() if k not in TIMING_META_KEYS}}


def assert_same_corpus(a: Path, b: Path) -> None:
    """Bit-identical content: every array (dtype too) but the measured solve times, and meta but its timing."""
    ma, mb = (json.loads((p / CORPUS_MANIFEST).read_text()) for p in (a, b))
    assert ma["content_checksum"] == mb["content_checksum"] is not None
    assert [s["file"] for s in ma["shards"]] == [s["file"] for s in mb["shards"]]
    for entry in ma["shards"]:
        ca, cb = _content(a / entry["file"]), _content(b / entry["file"])
        assert ca["meta"] == cb["meta"]
        assert sorted(ca["arrays"]) == sorted(cb["arrays"])
        for key, value in ca["arrays"].items():
            assert value.dtype == cb["arrays"][key].dtype and np.array_equal(value, cb["arrays"][key]), key
        assert (
            split_checksums(a / entry["file"])[1] == split_checksums(b / entry["file"])[1] == entry["content_checksum"]
        )


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The tiny corpus, made by one process."""
    path = tmp_path_factory.mktemp("corpus") / "ref"
    _generate(path, "--workers", "1")
    return path


def _copy(reference: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(reference, tmp_path / "copy"))


# ----------------------------------------------------------------- generation


def test_corpus_layout_and_manifest(reference):
    manifest = json.loads((reference / CORPUS_MANIFEST).read_text())
    assert manifest["complete"] and manifest["tasks"] == 6 and manifest["n_shards"] == 2
    assert [s["file"] for s in manifest["shards"]] == ["shard-00000.npz", "shard-00001.npz"]
    first = SEED_RANGES["corpus"][0]
    assert manifest["shards"][1]["seed_block"] == [first + 12, first + 24]  # 3 tasks x 4 seeds per block
    assert manifest["command"] == f"python examples/generate_dataset.py --corpus {reference} --size 6 --shard-size 3"
    corpus = load_corpus(reference)
    assert len(corpus) == 6 and corpus.shard_sizes == [3, 3]
    shard = corpus.shard(1)
    assert len(shard) == 3 and shard.name == "shard-00001"
    assert all(first + 12 <= t.seed < first + 24 for t in shard.tasks)
    seeds = [item.seed for item in corpus]
    assert seeds == sorted(seeds) and len(set(seeds)) == 6


def test_corpus_does_not_depend_on_the_workers(reference, tmp_path):
    _generate(tmp_path / "two", "--workers", "2")
    assert_same_corpus(reference, tmp_path / "two")


def test_a_rerun_keeps_every_valid_shard(reference, tmp_path, capsys):
    path = _copy(reference, tmp_path)
    stamps = {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*.npz")}
    _generate(path)
    assert "(0 generated, 2 kept)" in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in path.glob("shard-*.npz")}


@pytest.mark.parametrize("damage", ["deleted", "flipped byte", "edited array", "truncated", "no manifest"])
def test_resume_regenerates_missing_or_damaged_shards_bit_identically(reference, tmp_path, damage, capsys):
    path = _copy(reference, tmp_path)
    shard = path / "shard-00001.npz"
    if damage == "deleted":
        shard.unlink()
    elif damage == "flipped byte":
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "edited array":  # a valid zip whose arrays no longer match their checksum
        with np.load(shard) as npz:
            arrays = {k: npz[k] for k in npz.files}
        arrays["oracle_loss"] = arrays["oracle_loss"] + 1.0
        np.savez_compressed(shard, **arrays)
    elif damage == "truncated":  # what a kill during a non-atomic write would leave
        shard.write_bytes(shard.read_bytes()[:1000])
    else:  # killed after writing the shards but before the manifest: nothing is redone
        (path / CORPUS_MANIFEST).unlink()
    if damage != "no manifest":
        with pytest.raises(CorpusError):
            list(load_corpus(path))
    _generate(path, "--workers", "2")
    expected = "(0 generated, 2 kept)" if damage == "no manifest" else "(1 generated, 1 kept)"
    assert expected in capsys.readouterr().out
    assert_same_corpus(reference, path)
    assert len(list(load_corpus(path))) == 6


def test_a_corpus_made_with_other_settings_is_refused(reference, tmp_path, capsys):
    path = _copy(reference, tmp_path)
    assert GENERATE.main(["--corpus", str(path), "--size", "6", "--shard-size", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made with shard_size=3, not shard_size=2" in err[0] and "--shard-size 3" in err[0]


def test_a_larger_corpus_keeps_the_full_shards(reference, tmp_path, capsys):
    path = _copy(reference, tmp_path)
    assert GENERATE.main(["--corpus", str(path), "--size", "7", "--shard-size", "3", "--no-progress"]) == 0
    assert "(1 generated, 2 kept)" in capsys.readouterr().out
    corpus = load_corpus(path)
    assert len(corpus) == 7 and corpus.shard_sizes == [3, 3, 1]


def test_corpus_spec_checks_its_numbers():
    with pytest.raises(CorpusError, match="size must be a positive integer"):
        CorpusSpec(size=0)
    with pytest.raises(CorpusError, match="outside the 'corpus' seed range"):
        CorpusSpec(size=10, first_seed=SEED_RANGES["corpus"][1] - 5)
    with pytest.raises(CorpusError, match="outside the 'corpus' seed range"):
        CorpusSpec(size=10, first_seed=0)
    spec = CorpusSpec(size=2500, shard_size=1000)
    assert spec.n_shards == 3 and spec.shard_tasks(2) == 500 and len(spec.seed_block(2)) == 4000


def test_generate_corpus_refuses_a_file(tmp_path):
    file = tmp_path / "file"
    file.write_text("x")
    with pytest.raises(CorpusError, match="is a file"):
        generate_corpus(file, CorpusSpec(size=1), progress=False)


# -------------------------------------------------------------------- loading


def test_load_corpus_names_the_command_that_makes_it(reference, tmp_path):
    with pytest.raises(CorpusError, match="does not exist; generate it with .*generate_dataset.py --corpus"):
        load_corpus(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="has no manifest.json"):
        load_corpus(tmp_path / "empty")
    path = _copy(reference, tmp_path)
    (path / "shard-00000.npz").unlink()
    with pytest.raises(CorpusError, match=r"incomplete \(1 of 2 shards\); finish it with `python examples/gen"):
        load_corpus(path)
    (path / CORPUS_MANIFEST).write_text("{not json")
    with pytest.raises(CorpusError, match="not a dlm-gym corpus manifest"):
        load_corpus(path)


def test_a_shard_replaced_by_another_is_caught_on_read(reference, tmp_path):
    path = _copy(reference, tmp_path)
    shutil.copy(path / "shard-00000.npz", path / "shard-00001.npz")  # a valid file, but not the listed one
    corpus = load_corpus(path)
    assert len(corpus.shard(0)) == 3
    with pytest.raises(CorpusError, match="not the shard the manifest lists"):
        corpus.shard(1)


# ----------------------------------------------------------------- minibatches


def _stream(corpus, **kwargs) -> list[list[int]]:
    return [[t.seed for t in batch.tasks] for batch in corpus.iter_minibatches(**kwargs)]


def test_minibatches_cover_every_task_once_per_epoch(reference):
    corpus = load_corpus(reference)
    everyone = sorted(item.seed for item in corpus)
    batches = list(corpus.iter_minibatches(4, seed=0, epochs=3))
    assert [len(b) for b in batches] == [4, 2] * 3
    for epoch in range(3):
        seen = [t.seed for b in batches[2 * epoch : 2 * epoch + 2] for t in b.tasks]
        assert sorted(seen) == everyone  # every task once
        assert all(b.meta["epoch"] == epoch for b in batches[2 * epoch : 2 * epoch + 2])
    batch = batches[0]
    assert batch.videos.shape[0] == batch.commands.shape[0] == len(batch.oracle_loss) == 4
    assert all(batch.params[k].shape[0] == 4 for k in batch.params)
    i = batch.tasks[2].name  # "shard-0000k/j": the row it came from
    shard = corpus.shard(int(i.split("/")[0][-5:]))
    row = int(i.split("/")[1])
    assert np.array_equal(batch.videos[2], shard.videos[row]) and batch.oracle_loss[2] == shard.oracle_loss[row]


def test_minibatches_are_reproducible_and_shuffled(reference):
    corpus = load_corpus(reference)
    assert _stream(corpus, batch_size=2, seed=7, epochs=2) == _stream(corpus, batch_size=2, seed=7, epochs=2)
    streams = {str(_stream(corpus, batch_size=6, seed=s)) for s in range(6)}
    assert len(streams) > 1
    assert [len(b) for b in _stream(corpus, batch_size=4, seed=0, epochs=2, drop_last=True)] == [4, 4]
    forever = corpus.iter_minibatches(5, seed=0, epochs=None)  # each epoch ends with its short batch
    assert [len(next(forever)) for _ in range(10)] == [5, 1] * 5
    for bad in ({"batch_size": 0}, {"batch_size": 2, "epochs": 0}):
        with pytest.raises(ValueError):
            next(corpus.iter_minibatches(**{"seed": 0, **bad}))


def test_minibatches_read_one_shard_at_a_time(reference, monkeypatch):
    corpus = load_corpus(reference)
    reads = []
    original = type(corpus).shard
    monkeypatch.setattr(type(corpus), "shard", lambda self, k: reads.append(k) or original(self, k))
    list(corpus.iter_minibatches(4, seed=1, epochs=2))
    assert sorted(reads) == [0, 0, 1, 1]  # each shard read once per epoch, never kept


# ---------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--shard-size", "3"], "--shard-size needs --corpus DIR"),
        (["--corpus", "{tmp}/c"], "--corpus DIR needs --size N"),
        (["--corpus", "{tmp}/c", "--size", "3", "--split", "train"], "leave out --split and --out"),
        (["--corpus", "{tmp}/c", "--size", "3", "--out", "{tmp}"], "leave out --split and --out"),
        (["--address", "auto"], "--address needs --backend ray"),
        (["--backend", "dask"], "invalid choice: 'dask'"),
        (["--corpus", "{tmp}/c", "--size", "3", "--seed-offset", "-1"], "outside the 'corpus' seed range"),
    ],
)
def test_cli_errors_are_one_line(tmp_path, capsys, argv, message):
    try:
        code = GENERATE.main([a.format(tmp=tmp_path) for a in argv])
    except SystemExit as exit_:  # argparse's errors exit; errors found after parsing return 2
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not (tmp_path / "c").exists()


def test_the_ray_backend_without_ray_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install -e '\.\[ray\]'"):
        import_ray()
    assert GENERATE.main(["--corpus", str(tmp_path / "c"), *TINY, "--backend", "ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install -e '.[ray]'" in err[0]
    assert not (tmp_path / "c").exists()


def test_a_shard_whose_seed_block_runs_out_says_what_to_do(tmp_path, monkeypatch, capsys):
    import dlm_gym.datasets as datasets

    def reject(args):
        return {"seed": args[0], "status": "TIME_LIMIT", "solve_s": 0.0}

    monkeypatch.setattr(datasets.generation, "_label", reject)
    assert GENERATE.main(["--corpus", str(tmp_path / "c"), *TINY, "--workers", "1", "--time-limit", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shard 0 found fewer than 3 solvable tasks among its 12 seeds" in err[0]
    assert "raise --time-limit (0.5 s)" in err[0]
    assert not list((tmp_path / "c").glob("*.npz"))
    assert not json.loads((tmp_path / "c" / CORPUS_MANIFEST).read_text())["complete"]
