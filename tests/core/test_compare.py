"""The comparison: budgets in views, the summary over seeds, the report, and one small real run."""
import json
import subprocess
import sys

import pytest

from core import compare
from core.plan.presets import preset
from core.study import calibration
from core.study.calibration import measured_rate
from core.study.results import _verdict, findings, summarise, write_results
from core.study.variants import VARIANTS, _epochs, _stage, base_recipe

FASHION = base_recipe(preset("cpu-quick"))  # what the pipeline trains on Fashion-MNIST, the paper's mixing on


def run(top1, knn=0.8, pretrain=None):
    stage = {"knn": knn, "probe": knn - 0.01, "top1": top1, "seconds": 60.0,
             "curve": [[1000, knn - 0.1, top1 and top1 - 0.1], [2000, knn, top1]]}
    return {"budget": 2000, "final": stage, "pretrain": pretrain}


def test_budget_is_counted_in_views_so_two_view_objectives_get_half_the_epochs():
    assert _epochs(100_000, 2040, 1) == 49 and _epochs(100_000, 2040, 2) == 25
    assert _epochs(10, 2040, 1) == 1  # never zero epochs
    views = {v.name: v.views_per_image(FASHION) for v in VARIANTS}
    assert views["contrastive+ft"] == 2 and views["idmm+ft"] == 1  # the recipe's pair of views, not restated


def test_a_stage_keeps_the_recipes_warmup_unless_the_stage_is_too_short_for_it():
    base = FASHION
    long = _stage(base, 78)
    assert (long.epochs, long.warmup_epochs, long.eval_every, long.checkpoint_every) == (78, 2.0, 15, 78)
    short = _stage(base, 1, "contrastive")
    assert (short.epochs, short.warmup_epochs, short.eval_every) == (1, 0.25, 1)  # a valid one-epoch schedule
    assert (short.augment.n_global, short.augment.cutmix_alpha) == (2, 0.0)  # the contrastive recipe
    ft = _stage(long, 5, stage="finetune", init_from="pre.pt")
    assert (ft.objective, ft.init_from, ft.epochs, ft.warmup_epochs) == ("supervised", "pre.pt", 5, 1.25)


def test_ablations_remove_what_the_base_recipe_has():
    base = FASHION
    assert base.augment.cutmix_alpha == 0.5 and base.label_smoothing == 0.1 and base.objective == "instance"
    variants = {v.name: v for v in VARIANTS}
    assert base.with_overrides(**variants["idmm-no-cutmix+ft"].ablation).augment.cutmix_alpha == 0
    assert base.with_overrides(**variants["idmm-no-ls+ft"].ablation).label_smoothing == 0
    assert not variants["scratch"].pretrains and not variants["cnn"].pretrains
    assert all(v.pretrains for n, v in variants.items() if n not in ("scratch", "cnn"))


def test_the_grid_runs_seed_by_seed_all_labels_first_and_gives_the_cnn_the_same_minutes_in_its_views():
    args = compare.build_parser().parse_args(["--out", "x", "--views", "1000,5000", "--seeds", "2", "--variants",
                                              "scratch", "idmm+ft", "cnn", "--labels-per-class", "20,5,all",
                                              "--pretrain-on", "all,labelled"])
    arms = list(compare._arms(args, [("1000views", 1000), ("5000views", 5000)], {"vit": 1.0, "resnet18": 0.04}))
    first = [(tag, a.seed, a.variant.name, a.labels, a.budget) for tag, a in arms][:8]
    assert first == [("1000views", 0, "scratch", "all", 1000), ("1000views", 0, "idmm+ft", "all", 1000),
                     ("1000views", 0, "cnn", "all", 40), ("1000views", 0, "scratch", "5", 1000),
                     ("1000views", 0, "idmm+ft", "5", 1000), ("1000views", 0, "idmm+ft", "5-labelled", 1000),
                     ("1000views", 0, "cnn", "5", 40), ("1000views", 0, "scratch", "20", 1000)]
    assert len(arms) == 2 * 2 * (3 + 4 + 4)  # budgets x seeds x (all labels: 3 arms; 5 and 20: 4 each)


def test_labels_per_class_take_counts_or_all():
    assert compare.build_parser().parse_args(["--out", "x", "--labels-per-class", "5,all"]).labels_per_class == [5, 0]
    with pytest.raises(SystemExit):
        compare.build_parser().parse_args(["--out", "x", "--labels-per-class", "0"])


def test_summary_is_mean_and_sample_std_over_seeds():
    pre = {"knn": 0.7, "probe": 0.72, "top1": None, "seconds": 30.0, "curve": []}
    summary = summarise({"idmm+ft": [run(0.80, pretrain=pre), run(0.84, pretrain=pre)], "scratch": [run(0.78)]})
    mean, std = summary["idmm+ft"]["top1"]
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.0282843, rel=1e-5)
    assert summary["idmm+ft"]["pretrain_knn"][0] == pytest.approx(0.7)
    assert summary["scratch"]["pretrain_knn"] is None and summary["scratch"]["top1"] == [0.78, 0.0]
    assert summary["idmm+ft"]["minutes"][0] == pytest.approx(1.5)


@pytest.mark.parametrize("ours, scratch, word", [
    ([0.85, 0.01], [0.80, 0.01], "holds"),
    ([0.80, 0.01], [0.85, 0.01], "does not hold"),
    ([0.81, 0.02], [0.80, 0.02], "within one standard deviation"),
])
def test_verdict_states_the_ordering_plainly(ours, scratch, word):
    assert word in _verdict({"idmm+ft": {"top1": ours}, "scratch": {"top1": scratch}})


def test_findings_read_each_difference_against_the_spread_over_seeds():
    summary = {"idmm+ft": {"top1": [0.84, 0.003], "pretrain_knn": [0.826, 0.004]},
               "scratch": {"top1": [0.85, 0.001]},
               "idmm-no-ls+ft": {"top1": [0.838, 0.002], "pretrain_knn": [0.823, 0.003]}}
    rows = findings(summary)
    assert rows[2] == ("| pretraining + fine-tuning vs supervised from scratch (`idmm+ft` − `scratch`) | test top-1 | "
                       "-1.0 | 0.3 | second better |")
    assert ("| label smoothing in IDMM (`idmm+ft` − `idmm-no-ls+ft`) | stage-1 kNN | +0.3 | 0.4 | within one std"
            in rows[3])
    assert len(rows) == 5  # contrastive and CutMix were not run: no rows for them
    assert findings({"scratch": {"top1": [0.85, 0.0]}}) == []


def test_a_rerun_reuses_the_measured_rate_so_its_budget_and_results_stay(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(calibration, "calibrate",
                        lambda base, data, arch="vit": calls.append(base.dataset) or 1000.0 + len(calls))
    assert measured_rate(tmp_path, FASHION, None) == 1001.0
    assert measured_rate(tmp_path, FASHION, None) == 1001.0 and calls == ["fashion"]  # kept, not re-measured
    assert measured_rate(tmp_path, FASHION.with_overrides(dataset="digits"), None) == 1002.0  # measured anew


def test_report_has_the_table_the_command_and_the_plot(tmp_path):
    runs = {"scratch": [run(0.80), run(0.82)], "idmm+ft": [run(0.83, pretrain=run(None)["final"])] * 2}
    path = tmp_path / "RESULTS.md"
    write_results(path, summary=summarise(runs), runs=runs, variants=VARIANTS, budget=2000, rate=900.0,
                  minutes=2.0, command="python -m core.compare --x", dataset="fashion", n_train=2040,
                  n_test=10000, seeds=2)
    text = path.read_text()
    assert "`python -m core.compare --x`" in text and "2,000 views per variant" in text
    assert "| scratch | — | — | 80.0 ± 0.0 | 79.0 ± 0.0 | 81.0 ± 1.4 |" in text
    assert "![curves](results_curves.png)" in text and (tmp_path / "results_curves.png").stat().st_size > 1000


@pytest.mark.slow
def test_compare_runs_end_to_end_and_continues_where_it_stopped(tmp_path):
    args = [sys.executable, "-m", "core.compare", "--dataset", "digits", "--views", "3000", "--seeds", "1",
            "--variants", "scratch", "idmm+ft", "--out", str(tmp_path / "cmp"),
            "--results", str(tmp_path / "RESULTS.md")]
    first = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    arm = tmp_path / "cmp" / "3000views" / "idmm+ft" / "all" / "seed0"
    result = json.loads((arm / "result.json").read_text())
    assert result["budget"] == 3000 and 0 <= result["final"]["top1"] <= 1 and result["pretrain"]["knn"] > 0
    assert (arm / "finetune" / "last.pt").exists()
    assert "| idmm+ft |" in (tmp_path / "RESULTS.md").read_text()
    scratch = tmp_path / "cmp" / "3000views" / "scratch" / "all" / "seed0" / "result.json"
    stamp = scratch.stat().st_mtime_ns
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert scratch.stat().st_mtime_ns == stamp
    assert again.stdout.splitlines()[-2:] == first.stdout.splitlines()[-2:]


@pytest.mark.slow
def test_labels_per_class_share_one_pretraining_and_the_report_keeps_both_sections(tmp_path):
    out, report = tmp_path / "cmp", tmp_path / "RESULTS.md"
    report.write_text("# the paper's table\n")
    args = [sys.executable, "-m", "core.compare", "--dataset", "digits", "--views", "2000", "--seeds", "1",
            "--variants", "scratch", "idmm+ft", "--labels-per-class", "2,all", "--pretrain-on", "all,labelled",
            "--out", str(out), "--results", str(report)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    budget = out / "2000views"
    arms = sorted(str(p.parent.parent.relative_to(budget)) for p in budget.glob("*/*/seed0/result.json"))
    assert arms == ["idmm+ft/2", "idmm+ft/2-labelled", "idmm+ft/all", "scratch/2", "scratch/all"]
    assert sorted(p.name for p in (budget / "idmm+ft" / "pretrain").iterdir()) == ["seed0"]  # one, shared
    assert (budget / "idmm+ft" / "2-labelled" / "seed0" / "pretrain" / "last.pt").exists()  # its own
    two = json.loads((budget / "scratch" / "2" / "seed0" / "result.json").read_text())
    assert two["labels_per_class"] == 2 and two["budget"] == 2000
    assert json.loads((budget / "scratch" / "2" / "seed0" / "supervised" / "config.json").read_text())[
        "labels_per_class"] == 2
    text = report.read_text()
    assert text.startswith("# the paper's table") and "### Budget 2000views" in text
    assert "| idmm+ft (pretrained on the labelled only) |" in text and (tmp_path / "results_labels.png").exists()
    with_labels = json.loads((budget / "idmm+ft" / "2" / "seed0" / "result.json").read_text())
    shared = json.loads((budget / "idmm+ft" / "all" / "seed0" / "result.json").read_text())
    assert with_labels["pretrain"] == shared["pretrain"]  # the same pretraining, read back


@pytest.mark.slow
def test_on_a_folder_every_arm_trains_at_the_side_the_pipeline_trains(tmp_path):
    """Once compare trained a folder of photos at cpu-quick's 28 px while the pipeline trained them at 64: both
    now take the auto recipe, the CNN's arm included."""
    from scripts.make_folder_dataset import main as make_folder
    folder, out = tmp_path / "photos", tmp_path / "cmp"
    assert make_folder([str(folder), "--classes", "2", "--largest", "10", "--imbalance", "1"]) == 0
    done = subprocess.run([sys.executable, "-m", "core.compare", "--dataset", f"folder:{folder}", "--views", "300",
                           "--seeds", "1", "--variants", "scratch", "cnn", "--out", str(out),
                           "--results", str(tmp_path / "RESULTS.md")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for arm in ("scratch", "cnn"):
        config = json.loads((out / "300views" / arm / "all" / "seed0" / "supervised" / "config.json").read_text())
        assert (config["model"]["image_size"], config["data_size"]) == (64, 73)
