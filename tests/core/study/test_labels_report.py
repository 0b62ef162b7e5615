"""The labels-per-class section: its grid over seeds, its readings in words, and the report's two parts."""
from core.study.labels_report import grid, markdown_table, readings, write_labels_section
from core.study.results import LABELS_BEGIN, labels_section, write_results


def result(variant, k, top1, seed=0, pretrain_on="all", pretrained=True, tag="3min"):
    final = {"top1": top1, "balanced": top1 - 0.01, "knn": top1, "probe": top1, "seconds": 60.0, "curve": []}
    return {"budget_tag": tag, "variant": variant, "seed": seed, "labels_per_class": k, "pretrain_on": pretrain_on,
            "final": final, "pretrain": dict(final) if pretrained and variant != "scratch" else None}


RESULTS = [result("scratch", 5, 0.50), result("scratch", 5, 0.52, seed=1), result("scratch", 0, 0.85),
           result("scratch", 0, 0.87, seed=1), result("idmm+ft", 5, 0.60), result("idmm+ft", 5, 0.62, seed=1),
           result("idmm+ft", 0, 0.84), result("idmm+ft", 0, 0.84, seed=1),
           result("idmm+ft", 5, 0.55, pretrain_on="labelled"), result("scratch", 0, 0.87, tag="10min")]


def test_the_grid_averages_seeds_and_an_all_labels_arm_serves_both_pretraining_sets():
    table = grid(RESULTS)
    assert list(table) == ["3min", "10min"]  # by minutes, not alphabetically
    three = table["3min"]
    assert three["scratch"][5]["top1"][0] == 0.51 and three["scratch"][5]["seeds"] == 2
    assert three["idmm+ft (pretrained on the labelled only)"][0]["top1"] == [0.84, 0.0]  # the all-labels arm
    assert three["idmm+ft (pretrained on the labelled only)"][5]["top1"] == [0.55, 0.0]
    rows = markdown_table(three)
    assert rows[0] == "| method | 5 per class | all per class |"
    assert "| scratch | 51.0 ± 1.4 / 50.0 ± 1.4 (2) | 86.0 ± 1.4 / 85.0 ± 1.4 (2) |" in rows
    assert "| scratch | 51.0 ± 1.4 (2) | 86.0 ± 1.4 (2) |" in markdown_table(three, balanced=False)


def test_readings_say_where_pretraining_stops_paying_against_the_spread():
    words = readings(grid(RESULTS)["3min"])
    idmm = next(line for line in words if line.startswith("- **idmm+ft**"))
    assert "5: +10.0 (std 1.4, better)" in idmm and "all: -2.0 (std 1.4, worse)" in idmm
    assert "The reading changes between 5 and all (better → worse)." in idmm
    labelled = next(line for line in words if "labelled only" in line)
    assert "5: +4.0 (std 1.4, one seed: not read)" in labelled and labelled.endswith("worse).")  # nothing to cross
    assert readings({"idmm+ft": {}}) == ["`scratch` was not run at this budget: nothing to compare with."]
    against_cnn = readings(grid(RESULTS + [result("cnn", 5, 0.70)])["3min"], "cnn", ("idmm+ft",))
    assert len(against_cnn) == 2 and against_cnn[0].startswith("- **idmm+ft** − cnn") and "5: -9.0" in against_cnn[0]


def test_each_writer_keeps_the_other_part_of_the_report(tmp_path):
    path = tmp_path / "RESULTS.md"
    facts = dict(command="python -m core.compare --labels-per-class 5,all", dataset="fashion", n_train=2040,
                 n_classes=10, seeds=2, rate=1105.6)
    write_labels_section(path, RESULTS, **facts)
    first = labels_section(path.read_text())
    assert first.startswith(LABELS_BEGIN) and "### Budget 10min" in first
    assert (tmp_path / "results_labels.png").stat().st_size > 1000
    scratch = {"final": {"curve": [[10, 0.8, 0.8]]}, "pretrain": None}
    write_results(path, summary={}, runs={"scratch": [scratch]}, variants=(), budget=10, rate=None, minutes=None,
                  command="x",
                  dataset="fashion", n_train=2040, n_test=10000, seeds=1)
    text = path.read_text()
    assert text.startswith("# Results") and labels_section(text) == first  # the paper's table rewritten, kept
    write_labels_section(path, RESULTS[:3], **facts)
    again = path.read_text()
    assert again.startswith("# Results") and again.count(LABELS_BEGIN) == 1 and "idmm+ft" not in labels_section(again)
