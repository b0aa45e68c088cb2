"""The command line: list, verify, profile and bench, run as a user would."""
import json
import subprocess
import sys
from pathlib import Path

from reprobench.cli import main


def test_list_prints_the_registry(capsys):
    assert main(["list", "attention.*"]) == 0
    out = capsys.readouterr().out
    assert "attention.strided" in out and "attention.dense" in out


def test_verify_rejects_unknown_ids(capsys, tmp_path):
    assert main(["verify", "--only", "EFF-99", "--out", str(tmp_path)]) == 2
    assert "EFF-99" in capsys.readouterr().err
    assert not (tmp_path / "claims.json").exists()


def test_verify_quick_writes_the_report(tmp_path, monkeypatch, capsys):
    """The verify plumbing end to end, on one small real measurement (the full experiments are the
    main job, `reprobench verify`, not a unit test)."""
    import torch

    from reprobench.claims.experiment import Outcome
    from reprobench.measure import decide, peak_tensor_bytes

    def tiny_experiment(ctx):
        n = 64
        q = torch.randn(1, 1, n, 8)
        peak = peak_tensor_bytes(lambda: (q @ q.transpose(-1, -2)).softmax(-1)).peak_bytes
        return Outcome(claimed="scores are n x n", measured={"peak": peak}, rule="holds if peak >= 4 n^2 bytes",
                       evidence="tiny", decisions=[decide("peak", peak, at_least=4 * n * n)])

    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"EFF-01": tiny_experiment})
    assert main(["verify", "--quick", "--only", "EFF-01", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "claims.json").read_text())
    assert [c["id"] for c in data["claims"]] == ["EFF-01"]
    eff01 = next(c for c in data["claims"] if c["id"] == "EFF-01")
    assert eff01["verdict"] == "holds" and eff01["measured"]["peak"] == 2 * 4 * 64 * 64
    assert {"torch_version", "threads", "cpu_model", "device", "git_commit", "git_dirty"} <= set(data["environment"])
    assert (tmp_path / "claims.md").read_text().startswith("# reprobench")
    assert "1 holds" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    result = subprocess.run([sys.executable, "-m", "reprobench", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "verify" in result.stdout


def test_profile_writes_traces_tensorboard_lists(tmp_path, capsys):
    assert main(["profile", "attention.strided", "--size", "64", "--logdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "tensorboard --logdir" in out and "perfetto" in out.lower()
    chrome = list(tmp_path.glob("*.chrome_trace.json"))
    assert len(chrome) == 1 and json.loads(chrome[0].read_text())["traceEvents"]
    run_dirs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(run_dirs) == 1
    loaded = subprocess.run([sys.executable, str(Path(__file__).with_name("tb_plugin_load.py")), str(run_dirs[0])],
                            capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "attention.strided" in loaded.stdout and "operator" in loaded.stdout


def test_profile_unknown_component(capsys):
    assert main(["profile", "attention.nope", "--logdir", "/tmp/unused"]) == 2


def test_bench_small_size(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "attention.strided", "--size", "64", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert rows[0]["matches_reference"] and rows[0]["optimized_host_syncs"] == 0


def test_verify_records_the_environment_as_the_run_starts(tmp_path, monkeypatch):
    """A commit made while a long verify runs is not what ran: the provenance is taken before the experiments."""
    from reprobench.claims.experiment import Outcome
    from reprobench.measure import decide, environment

    order = []
    real = environment.fingerprint

    def recording_fingerprint(device):
        order.append("fingerprint")
        return real(device)

    def experiment(ctx):
        order.append("experiment")
        return Outcome(claimed="c", measured={}, rule="r", evidence="e", decisions=[decide("x", 1, at_least=0)])

    monkeypatch.setattr(environment, "fingerprint", recording_fingerprint)
    monkeypatch.setattr("reprobench.claims.runner.load_experiments", lambda: {"EFF-01": experiment})
    assert main(["verify", "--only", "EFF-01", "--out", str(tmp_path)]) == 0
    assert order == ["fingerprint", "experiment"]
