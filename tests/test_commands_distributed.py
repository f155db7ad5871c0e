"""``odin-ood score --distributed`` under torchrun: 2 CPU processes (gloo, loopback) give exactly
the single-process output, even for a model whose rounding depends on the batch position (ranks
take whole batches); a failing rank leaves no output file and a clear error."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from odin_ood.cli import main
from odin_ood.commands.row_files import read_rows
from serving_support import SRC, encode, env, fit_mnist_detector, free_port


@pytest.fixture(scope="module")
def setup(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    _, mnist, notmnist = fit_mnist_detector(shared_data, root / "det", batch_size=16)
    folder = root / "imgs"
    folder.mkdir()
    for i in range(23):  # odd count: the ranks' shards differ in length
        (folder / f"{i:03d}.png").write_bytes(encode(mnist.images[3000 + i, 0].numpy()))
    with zipfile.ZipFile(root / "letters.zip", "w") as z:
        for i in range(14):
            z.writestr(f"{i:02d}.png", encode(notmnist.images[i, 0].numpy()))
        z.writestr("99.png", b"broken")
    args = [
        str(folder),
        str(root / "letters.zip"),
        "--detector",
        str(root / "det"),
        "--model",
        "mnist-mlp",
        "--threads",
        "1",
        "--chunk",
        "4",
        "--quiet",
    ]
    return root, args


TESTS = Path(__file__).resolve().parent


def torchrun(script: list[str], cwd) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--nnodes",
        "1",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        *script,
    ]
    return subprocess.run(
        cmd, env=dict(env(), PYTHONPATH=f"{SRC}:{TESTS}"), cwd=cwd, capture_output=True, text=True, timeout=240
    )


@pytest.mark.parametrize("fmt", ["csv", pytest.param("parquet", marks=pytest.mark.slow)])
def test_two_gloo_ranks_write_exactly_the_single_process_output(setup, tmp_path, monkeypatch, fmt):
    _root, args = setup
    args = [*args, "--model", "position_support:make"]  # the last --model wins: rounding depends on the position
    monkeypatch.syspath_prepend(str(TESTS))
    single = tmp_path / f"single.{fmt}"
    assert main(["score", *args, "--output", str(single)]) == 0
    out = tmp_path / f"dist.{fmt}"
    proc = torchrun(
        ["-m", "odin_ood", "score", "--distributed", "--backend", "gloo", *args, "--output", str(out)], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes() == single.read_bytes() if fmt == "csv" else _table(out).equals(_table(single))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([single.name, out.name])  # shards cleaned up


def _table(path):
    import pyarrow.parquet as pq

    return pq.read_table(path)


FAILING = """
import os, sys
from odin_ood.commands import rows
real = rows.score_rows
def failing(*a, **k):
    if os.environ["RANK"] == "1":
        raise OSError("disk on fire")
    return real(*a, **k)
rows.score_rows = failing
from odin_ood.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_a_failing_rank_stops_the_job_without_an_output_file(setup, tmp_path):
    _, args = setup
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    out = tmp_path / "out.csv"
    proc = torchrun([str(script), "score", "--distributed", *args, "--output", str(out)], tmp_path)
    assert proc.returncode != 0
    assert "rank 1/2 failed: OSError: disk on fire" in proc.stderr
    assert "out.csv was not written" in proc.stderr
    assert not out.exists() and not (tmp_path / "out.csv.partial").exists()


def test_resuming_shards_with_a_refitted_detector_is_refused_by_every_rank_touching_nothing(
    setup, shared_data, tmp_path
):
    """Rank 1 fails, rank 0's shard is finished; resumed with a re-fitted detector (T = 1000,
    epsilon = 0: other scores, another threshold) no rank scores and no byte changes; resumed
    with the detector that wrote the shard, the output is the single-process one."""
    from odin_ood import Detector, data, models

    _root, args = setup
    refit = Detector(models.load("mnist-mlp"), temperatures=(1000.0,), epsilons=(0.0,), batch_size=16)
    refit.fit(
        data.load("mnist", root=shared_data).images[:200].float() / 255,
        data.load("notmnist", root=shared_data).images[:200].float() / 255,
    )
    refit.save(tmp_path / "refit")
    script = tmp_path / "failing.py"
    script.write_text(FAILING)
    out = tmp_path / "run" / "out.csv"
    out.parent.mkdir()
    assert torchrun([str(script), "score", "--distributed", *args, "--output", str(out)], tmp_path).returncode != 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert "out.csv.rank0-of-2.jsonl" in before  # rank 0 finished its shard
    proc = torchrun(
        [
            "-m",
            "odin_ood",
            "score",
            "--distributed",
            *args,
            "--detector",
            str(tmp_path / "refit"),
            "--output",
            str(out),
            "--resume",
        ],
        tmp_path,
    )
    assert proc.returncode != 0
    assert "rank 0/2 failed: ValueError: --resume:" in proc.stderr and "another detector" in proc.stderr
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # rank 1 did not score either
    proc = torchrun(["-m", "odin_ood", "score", "--distributed", *args, "--output", str(out), "--resume"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = tmp_path / "single.csv"
    assert main(["score", *args, "--output", str(single)]) == 0
    assert out.read_bytes() == single.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.csv"]  # shards and their records removed


def test_distributed_without_torchrun_is_a_clear_error(setup, tmp_path, capsys):
    _, args = setup
    assert main(["score", "--distributed", *args, "--output", str(tmp_path / "o.csv")]) == 2
    assert "torchrun" in capsys.readouterr().err


@pytest.mark.parametrize("timeout", ["inf", "nan", "1e20"])
def test_a_timeout_no_timedelta_holds_is_one_error_line(setup, tmp_path, capsys, monkeypatch, timeout):
    _, args = setup
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["score", "--distributed", *args, "--output", str(tmp_path / "o.csv"), "--timeout", timeout]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timeout must be a number of seconds in (0, 1e+09]" in err, err


FAIL_ON_RANK = """
import os, sys
from odin_ood.commands import rows
real = rows.score_rows
def failing(*a, **k):
    if os.environ["RANK"] == os.environ["ODIN_OOD_TEST_FAIL_RANK"]:
        raise OSError(f"rank {os.environ['RANK']} must not score")
    return real(*a, **k)
rows.score_rows = failing
from odin_ood.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def two_nodes(script: list[str], cwd, fail_rank: str = "none") -> list[subprocess.CompletedProcess]:
    """Two torchrun agents, one process each, joined as two nodes by a c10d rendezvous on 127.0.0.1."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{free_port()}",
        "--rdzv-id",
        "odin-ood-two-nodes",
        "--max-restarts",
        "0",
        *script,
    ]
    run_env = dict(env(), PYTHONPATH=f"{SRC}:{TESTS}", ODIN_OOD_TEST_FAIL_RANK=fail_rank)
    agents = [
        subprocess.Popen(cmd, env=run_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    done = []
    for agent in agents:
        out, err = agent.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(cmd, agent.returncode, out, err))
    return done


def test_two_torchrun_nodes_give_the_single_process_rows_and_a_failed_rank_resumes(setup, tmp_path, monkeypatch):
    _root, args = setup
    args = [*args, "--model", "position_support:make"]
    monkeypatch.syspath_prepend(str(TESTS))
    single = tmp_path / "single.csv"
    assert main(["score", *args, "--output", str(single)]) == 0
    script = tmp_path / "fail_on_rank.py"
    script.write_text(FAIL_ON_RANK)
    out = tmp_path / "nodes.csv"
    command = [str(script), "score", "--distributed", "--backend", "gloo", *args, "--output", str(out)]
    agents = two_nodes(command, tmp_path)
    assert [a.returncode for a in agents] == [0, 0], agents[0].stderr[-2000:] + agents[1].stderr[-2000:]
    assert out.read_bytes() == single.read_bytes()

    out.unlink()
    agents = two_nodes(command, tmp_path, fail_rank="1")  # rank 1 fails before it writes a row
    stderr = agents[0].stderr + agents[1].stderr
    assert all(a.returncode != 0 for a in agents) and "rank 1/2 failed: OSError: rank 1 must not score" in stderr
    assert "nodes.csv was not written" in stderr and not out.exists()
    kept = tmp_path / "nodes.csv.rank0-of-2.jsonl"  # rank 0's finished shard: batches 0 and 2
    assert [r["index"] for r in read_rows(kept, "jsonl")] == [*range(16), *range(32, 38)]
    agents = two_nodes([*command, "--resume"], tmp_path, fail_rank="0")  # rank 0 would fail if it scored again
    assert [a.returncode for a in agents] == [0, 0], agents[0].stderr[-2000:] + agents[1].stderr[-2000:]
    assert out.read_bytes() == single.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([single.name, out.name, script.name])
