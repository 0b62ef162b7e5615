
import re

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from core import events as ev
from demo import plots
from demo.history import RunHistory


def make_run(run_id="r1", label="run 1", steps=12, steps_per_epoch=4, knn=(), baselines=None):
    """A RunView built the way the app builds one: by folding trainer events."""
    history = RunHistory(run_id, label, ["a", "b"])
    history(ev.RunStarted("cpu", 40, 20, steps_per_epoch, steps, 0, 1000))
    if baselines is not None:
        history(ev.Baselines(*baselines))
    for i in range(1, steps + 1):
        history(ev.StepMetrics(i, (i - 1) // steps_per_epoch, 3.0 / i + 0.1 * (i % 2), 1e-3 * i, 100.0))
    for epoch, value in enumerate(knn, start=1):
        history(ev.EpochMetrics(epoch, epoch * steps_per_epoch, 1.0, value, 1.0))
    return history.view()


def annotation_texts(fig):
    return [annotation.text for annotation in fig.layout.annotations]


# --- smoothing -------------------------------------------------------------------------------

def test_ema_matches_a_hand_computed_series():
    # s = 0.5 s + 0.5 x, debiased by 1 - 0.5^t: x = [0, 1, 1] -> s = [0, .5, .75] -> [0, .5/.75, .75/.875]
    assert plots.ema(np.array([0.0, 1.0, 1.0]), weight=0.5) == pytest.approx([0.0, 2 / 3, 6 / 7])


def test_ema_of_a_constant_is_the_constant_and_weight_zero_is_identity():
    assert plots.ema(np.full(50, 2.5)) == pytest.approx(np.full(50, 2.5))
    values = np.array([3.0, -1.0, 4.0])
    assert plots.ema(values, weight=0.0) == pytest.approx(values)
    assert len(plots.ema(np.array([]))) == 0


# --- training figure -------------------------------------------------------------------------

def test_training_figure_draws_raw_smoothed_and_lr_in_epochs():
    run = make_run(steps=12, steps_per_epoch=4)
    fig = plots.training_figure([run])
    raw, smooth, lr = fig.data
    assert [trace.name for trace in fig.data] == ["run 1" + plots.RAW_SUFFIX, "run 1", "run 1"]
    assert raw.showlegend is False and smooth.showlegend is not False and lr.showlegend is False
    assert np.allclose(raw.x, np.arange(1, 13) / 4) and np.allclose(raw.y, run.losses)
    assert np.allclose(smooth.y, plots.ema(run.losses))
    assert np.allclose(lr.y, run.lrs) and lr.yaxis == "y2" and raw.yaxis == "y"
    assert raw.line.width < smooth.line.width and raw.opacity < 1
    assert fig.layout.uirevision and fig.layout.template == pio.templates["plotly_white"]


def test_training_figure_overlays_runs_in_their_own_colours():
    old, current = make_run("r1", "run 1"), make_run("r2", "run 2", steps=24, steps_per_epoch=8)
    fig = plots.training_figure([old, current])
    assert len(fig.data) == 6
    smooth = [trace for trace in fig.data if trace.showlegend is not False]
    assert [trace.name for trace in smooth] == ["run 1", "run 2"]
    assert len({trace.line.color for trace in smooth}) == 2
    assert smooth[1].line.width > smooth[0].line.width  # the current run stands out
    assert smooth[0].x[-1] == smooth[1].x[-1] == 3.0  # both end at epoch 3 despite other batch sizes


def test_training_figure_thins_long_runs_but_keeps_the_newest_point():
    run = make_run(steps=5 * plots.MAX_LINE_POINTS + 3, steps_per_epoch=10)
    raw = plots.training_figure([run]).data[0]
    assert len(raw.x) <= plots.MAX_LINE_POINTS + 1
    assert raw.x[-1] == pytest.approx(run.steps[-1] / 10)


def test_training_figure_placeholder_without_steps():
    empty = make_run(steps=0)
    fig = plots.training_figure([empty])
    assert len(fig.data) == 0 and annotation_texts(fig) == [plots.EMPTY_TRAINING]
    assert annotation_texts(plots.training_figure([])) == [plots.EMPTY_TRAINING]


# --- kNN figure ------------------------------------------------------------------------------

def test_knn_figure_has_runs_and_the_current_baselines():
    old = make_run("r1", "run 1", knn=(0.4, 0.5, 0.6), baselines=(0.9, 0.9))
    current = make_run("r2", "run 2", knn=(0.55, None, 0.7), baselines=(0.62, 0.31))
    fig = plots.knn_figure([old, current])
    by_name = {trace.name: trace for trace in fig.data}
    raw_name, random_name = plots.BASELINE_RAW.format(value=0.62), plots.BASELINE_RANDOM.format(value=0.31)
    assert set(by_name) == {"run 1", "run 2", raw_name, random_name}  # the old run's baselines are not drawn
    assert list(by_name[raw_name].y) == [0.62, 0.62] and list(by_name[random_name].y) == [0.31, 0.31]
    assert by_name[raw_name].line.dash and by_name[random_name].line.dash
    assert list(by_name[raw_name].x) == [0, 3.0]
    assert list(by_name["run 2"].x) == [1, 3] and list(by_name["run 2"].y) == [0.55, 0.7]
    assert by_name["run 1"].line.color != by_name["run 2"].line.color
    assert fig.layout.yaxis.tickformat.endswith("%")


def test_knn_figure_shows_baselines_before_any_evaluation():
    fig = plots.knn_figure([make_run(baselines=(0.6, 0.2))])
    assert sorted(trace.y[0] for trace in fig.data) == [0.2, 0.6]


def test_knn_figure_placeholder_without_data():
    assert annotation_texts(plots.knn_figure([make_run()])) == [plots.EMPTY_KNN]
    assert annotation_texts(plots.knn_figure([])) == [plots.EMPTY_KNN]


# --- UMAP figure -----------------------------------------------------------------------------

def test_placeholder_is_a_light_figure():
    fig = plots.empty_figure("hello")
    assert isinstance(fig, go.Figure) and annotation_texts(fig) == ["hello"] and len(fig.data) == 0
    assert fig.layout.xaxis.visible is False and fig.layout.template == pio.templates["plotly_white"]


def test_attention_overlay_reddens_where_attended_and_keeps_the_rest():
    from demo.plots import attention_overlay
    gray = np.full((4, 4), 100, dtype=np.uint8)
    attention = np.zeros((4, 4), dtype=np.float32)
    attention[0, 0] = 1.0
    out = attention_overlay(gray, attention, scale=2)
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    assert (out[2:, 2:] == 100).all()  # no attention: the input unchanged
    assert out[0, 0, 0] > 100 and out[0, 0, 1] < 100  # full attention: pulled towards red


def test_the_watchdogs_words_reach_the_status_line_and_the_curve():
    from demo import text
    history = RunHistory("r1", "run 1", ["a", "b"])
    history(ev.RunStarted("cpu", 40, 20, 4, 40, 0, 1000))
    for epoch, knn in enumerate((0.8, 0.7, 0.6), start=1):
        history(ev.EpochMetrics(epoch, epoch * 4, 1.0, knn, 1.0))
    history(ev.Advice(3, "pretraining has stopped helping; stop and fine-tune"))
    view = history.view()
    assert "⚠ epoch 3: pretraining has stopped helping" in text.status_line(view)
    assert "**Fine-tune**" in text.status_line(view)
    assert plots.NOT_HELPING in annotation_texts(plots.knn_figure([view]))
    assert plots.NOT_HELPING not in annotation_texts(plots.knn_figure([make_run(knn=(0.5, 0.6))]))
    # a pipeline's hand-over goes on by itself: no button to press
    from core.trainer.handover import HANDOVER
    history(ev.Advice(3, f"it stopped helping; {HANDOVER}fine-tuning the backbone of epoch 1"))
    assert "**Fine-tune**" not in text.status_line(history.view())
    assert "goes to fine-tuning the backbone of epoch 1." in text.status_line(history.view())
    marks = annotation_texts(plots.knn_figure([history.view()]))
    assert plots.HANDED_OVER_MARK in marks and plots.NOT_HELPING not in marks


def test_a_pipelines_pretraining_shows_the_held_out_figure_that_decides_its_hand_over():
    history = RunHistory("r1", "run 1", ["a", "b"])
    history(ev.RunStarted("cpu", 40, 20, 4, 40, 0, 1000))
    history(ev.EpochMetrics(1, 4, 1.0, 0.6, 1.0, held_out=0.7))
    history(ev.EpochMetrics(2, 8, 1.0, None, 1.0))  # not evaluated: no held-out figure either
    history(ev.EpochMetrics(3, 12, 1.0, 0.65, 1.0, held_out=0.75))
    names = {trace.name: (list(trace.x), list(trace.y)) for trace in plots.knn_figure([history.view()]).data}
    assert names["run 1" + plots.HELD_OUT_SUFFIX] == ([1, 3], [0.7, 0.75])
    assert not any(plots.HELD_OUT_SUFFIX in trace.name for trace in plots.knn_figure([make_run(knn=(0.5,))]).data)


def test_unequal_classes_get_balanced_accuracy_beside_top1():
    from demo import text
    history = RunHistory("r1", "run 1", ["a", "b"])
    history(ev.RunStarted("cpu", 25, 10, 4, 8, 0, 1000, "supervised", "", (20, 5), True))
    history(ev.EpochMetrics(1, 4, 1.0, 0.8, 1.0, 0.7, ((6, 0), (3, 1)), 0.6, 0.55))
    history(ev.EpochMetrics(2, 8, 1.0, 0.9, 1.0, 0.8, ((6, 0), (2, 2)), 0.7, 0.75))
    view = history.view()
    assert view.imbalanced and view.imbalance == 4.0
    assert "largest 4.0× the smallest" in text.status_line(view) and "weighs classes" in text.status_line(view)
    names = {trace.name: list(trace.y) for trace in plots.knn_figure([view]).data}
    assert names["run 1 · balanced"] == [0.6, 0.7] and names["run 1 · class head · balanced"] == [0.55, 0.75]
    assert "balanced 75.0%" in plots.confusion_figure(view).layout.title.text  # (1 + 0.5) / 2
    equal = make_run(knn=(0.5, 0.6))
    assert not equal.imbalanced and not any("balanced" in trace.name for trace in plots.knn_figure([equal]).data)


def test_the_smoothing_slider_sets_the_loss_curves_weight():
    run = make_run(steps=12, steps_per_epoch=4)
    _, smooth, _ = plots.training_figure([run], smoothing=0.5).data
    assert np.allclose(smooth.y, plots.ema(run.losses, 0.5))
    assert np.allclose(plots.training_figure([run], smoothing=0.0).data[1].y, run.losses)  # no smoothing
    with pytest.raises(ValueError, match="smoothing"):
        plots.training_figure([run], smoothing=1.0)


def test_a_budget_being_fitted_shows_no_provisional_length_and_the_plan_stays_under_the_progress():
    from demo import text
    history = RunHistory("r1", "run 1", ["a", "b"])
    history.plan("auto recipe: 64 px, patch 8; expected: supervised training from scratch is expected to match")
    history(ev.RunStarted("cpu", 40, 20, 4, 100_000, 0, 1000, budget_minutes=5.0))
    history(ev.StepMetrics(1, 0, 3.0, 1e-3, 100.0))
    history(ev.StepMetrics(2, 0, 3.0, 1e-3, 100.0))
    fitting = text.status_line(history.view())
    short = fitting.split("\n")[0]
    assert short == "**running** · run 1 · epoch 0 · timing its steps to fit 5 min"  # no provisional length
    assert "100000" not in fitting and "25000" not in fitting and "left" not in short
    history(ev.Baselines(0.3, 0.4))
    widest = max(max(trace.x) for trace in plots.knn_figure([history.view()]).data)
    assert widest < 100  # the baselines do not stretch over the provisional 25,000 epochs
    history(ev.BudgetFitted(5.0, 46, 2, 184, 410.0, "5 min budget: ~46 epochs at 410 img/s"))
    history(ev.StepMetrics(3, 0, 3.0, 1e-3, 100.0))
    fitted = text.status_line(history.view())
    assert max(max(trace.x) for trace in plots.knn_figure([history.view()]).data) == 46
    assert re.fullmatch(r"\*\*running\*\* · run 1 · epoch 0/46 · step 3/184 · \d+:\d\d left", fitted.split("\n")[0])
    # the reasons one click away: the plan said before training began, then the run's latest message
    reasons = fitted.split("</summary>\n\n")[1].split("  \n")
    assert reasons[0].startswith("auto recipe: 64 px") and reasons[1].startswith("5 min budget: ~46 epochs")
    history.plan("pipeline: fine-tuning the pretrained backbone of epoch 4")
    assert text.status_line(history.view()).split("</summary>\n\n")[1].split("  \n")[0:2] == [
        "auto recipe: 64 px, patch 8; expected: supervised training from scratch is expected to match",
        "pipeline: fine-tuning the pretrained backbone of epoch 4"]
