"""``semqa demo``'s real path end to end, at the reduced scale of ``semqa demo --quick`` (issue 15).

Nothing is replaced: the pairs and lots are synthesized, validated, a generator is trained and
registered, promoted behind the real gates, the lots are analysed and compared, the report is
written and the lineage traced, in a store of its own. Each test reads what the demo left behind
(the registry, the result JSONs) the way a user would.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semqa.demo import QUICK, truth_d50


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ``semqa demo --quick`` run, through the CLI, in a store no other test promotes into."""
    from semqa.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo_out"
    with pytest.MonkeyPatch.context() as mp:
        # Its own store: the production gate compares with the current production version,
        # which another test in this session may have set.
        mp.setenv("SEMQA_HOME", str(tmp_path_factory.mktemp("demo-home")))
        assert main(["demo", "--quick", "--out", str(out)]) == 0
        yield out


def _result(out: Path, name: str) -> dict:
    return json.loads((out / name).read_text())


def test_trained_generator_passes_the_gates_into_production(demo_out: Path) -> None:
    from semqa.registry.audit import read_audit
    from semqa.registry.store import configure_tracking

    configure_tracking()
    entries = read_audit()
    assert {(e.alias, e.version) for e in entries} == {("staging", "1"), ("production", "1")}
    for entry in entries:
        assert entry.gates_passed and not entry.forced, entry
        assert entry.gates and all(g.passed for g in entry.gates)
    # The analyses ran with the version the gates let through.
    analysis = _result(demo_out, "analysis_rld_lot1_sr.json")
    assert analysis["sr"] and analysis["lineage"]["model"]["version"] == "1"


def test_shifted_generic_is_never_equivalent(demo_out: Path) -> None:
    # D50 25 % larger than the RLD's: super-resolved, or from the LR scans where the sizing
    # limit censors the D-values, the verdict may be not_equivalent or inconclusive, never equivalent.
    for name in ("compare_rld_vs_generic-shifted.json", "compare_rld_vs_generic-shifted_lr_direct.json"):
        assert _result(demo_out, name)["verdict"] in ("not_equivalent", "inconclusive"), name
    assert _result(demo_out, "compare_rld_vs_generic-shifted.json")["sr"]
    lr_direct = _result(demo_out, "compare_rld_vs_generic-shifted_lr_direct.json")
    assert not lr_direct["sr"] and "resolution too coarse" in lr_direct["reason"]


def test_equivalent_generic_is_not_found_different(demo_out: Path) -> None:
    assert _result(demo_out, "compare_rld_vs_generic-equivalent.json")["verdict"] in ("equivalent", "inconclusive")


def test_a_design_too_small_for_pbe_says_so(demo_out: Path) -> None:
    # --quick has fewer units per lot than FDA's PBE design needs: no verdict may pass as if it had them.
    from semqa.stats.equivalence import CompareConfig

    needed = CompareConfig().min_units_per_lot
    assert QUICK.images_per_lot < needed
    for path in demo_out.glob("compare_*.json"):
        report = json.loads(path.read_text())
        assert report["verdict"] == "inconclusive" and f"the design needs {needed}" in report["reason"], path.name


def _true_ratio(out: Path, generic: str) -> float:
    """Geometric mean over lots of the generic's true D50 over the RLD's (synth ground truth, lots.csv)."""
    import numpy as np
    import pandas as pd

    d50 = {p: pd.read_csv(out / "lots" / p / "lots.csv")["d50_um"].to_numpy() for p in ("rld", generic)}
    return float(np.exp(np.log(d50[generic]).mean() - np.log(d50["rld"]).mean()))


def _measured_ratio(report: dict) -> float:
    """The same ratio from a comparison's lots as analysed (each lot's pooled D50)."""
    import numpy as np

    def mean_log(side: str) -> float:
        return float(np.mean([np.log(lot["psd"]["d50_um"]) for lot in report[side].values()]))

    return float(np.exp(mean_log("test") - mean_log("reference")))


@pytest.mark.parametrize("generic", ["generic-equivalent", "generic-shifted"])
def test_comparisons_measure_the_true_d50_ratio(demo_out: Path, generic: str) -> None:
    # Whatever the verdict, the super-resolved lots' D50s must show the products as generated:
    # the measured generic/RLD ratio lies nearer its true one than the other generic's.
    other = ({"generic-equivalent", "generic-shifted"} - {generic}).pop()
    measured = _measured_ratio(_result(demo_out, f"compare_rld_vs_{generic}.json"))
    true, wrong = _true_ratio(demo_out, generic), _true_ratio(demo_out, other)
    assert abs(measured - true) < abs(measured - wrong), (measured, true, wrong)


def test_super_resolution_brings_the_d50_closer_to_the_truth(demo_out: Path) -> None:
    # RLD lot 1 against its synthetic ground truth: the LR scan analysed directly overestimates
    # the D50 (its sizing limit, blur); the super-resolved one is what the demo trained for.
    truth = truth_d50(demo_out / "lots" / "rld", "lot1")
    sr = _result(demo_out, "analysis_rld_lot1_sr.json")["psd"]["d50_um"]
    lr = _result(demo_out, "compare_rld_vs_generic-shifted_lr_direct.json")["reference"]["lot1"]["psd"]["d50_um"]
    assert abs(sr - truth) < abs(lr - truth)
    assert abs(sr - truth) / truth < 0.10  # the production gate's D50 limit


def test_lineage_of_every_result_holds(demo_out: Path) -> None:
    from semqa.registry.lineage import trace_result

    results = sorted(demo_out.glob("*.json"))
    assert len(results) == 4  # the lot-1 analysis and the three comparisons
    for path in results:
        report = trace_result(path)  # raises LineageBroken where a link does not hold
        steps = {link.step for link in report.links}
        assert report.ok and {"input", "model", "record"} <= steps, path
        if _result(demo_out, path.name)["sr"]:  # model version → training run → data → code
            assert {"weights", "training_run", "dataset", "validation_report", "code"} <= steps, path
    assert (demo_out / "report.pdf").read_bytes().startswith(b"%PDF")
    assert "RLD vs generic-equivalent" in (demo_out / "report.html").read_text()


@pytest.mark.parametrize("option", [["--pairs", "1"], ["--images-per-lot", "0"], ["--workers", "0"]])
def test_bad_demo_options_are_one_line_errors_and_write_nothing(option: list[str], tmp_path: Path, capsys) -> None:
    from semqa.cli import main

    out = tmp_path / "demo_out"
    assert main(["demo", *option, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"semqa: bad demo option {option[0]}") and "\n" not in err, err
    assert not out.exists()
