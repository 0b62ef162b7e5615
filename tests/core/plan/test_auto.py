"""The auto recipe: its rules read measured facts (sides, framing, channels, device, budget), never a name."""
import pytest

from core.data.sources import load_dataset
from core.objectives import build_objective
from core.plan import auto as auto_recipe_module
from core.plan.auto import MIN_PASSES, MIN_STEPS, Facts, auto_recipe, batch_and_lr, choose_side, plan
from core.plan.recipe import describe, recipe
from core.plan.timing import Throughput, Timing, passes
from core.policy import LONG_PASSES
from scripts.make_folder_dataset import main as make_folder


def facts(native=300, n=2000, channels=3, light_on_dark=False, device="cpu", minutes=5.0):
    return Facts(native, n, channels, light_on_dark, device, minutes)


def rate_for(passes_wanted, f):
    """A throughput whose budget allows `passes_wanted` passes over f's training images (evaluations free)."""
    return Throughput(passes_wanted * f.n_train / (f.minutes * 60), eval_s=0.0, batch=128)


def test_small_images_keep_their_side_on_a_four_by_four_grid():
    assert choose_side(facts(native=28)) == (28, 7, 28)
    assert choose_side(facts(native=20)) == (20, 5, 20)


def test_photos_on_a_cpu_get_64_px_unless_the_budget_is_too_short_for_it():
    f = facts()
    assert choose_side(f, rate_for(MIN_PASSES + 1, f)) == (64, 8, 73)
    assert choose_side(f, rate_for(MIN_PASSES - 1, f)) == (32, 8, 36)
    assert choose_side(facts(minutes=0)) == (64, 8, 73)  # no budget: the side for detail
    assert choose_side(facts(device="cuda")) == (112, 16, 128)  # the paper's DeiT-Tiny


def test_photos_get_flips_and_wide_crops_aligned_light_on_dark_objects_do_not():
    photo = auto_recipe(facts(), rate_for(60, facts()))
    aligned = auto_recipe(facts(native=28, channels=1, light_on_dark=True), rate_for(60, facts()))
    assert photo.augment.flip_p == 0.5 and photo.augment.global_scale == (0.4, 1.0) and photo.augment.gray_p > 0
    assert aligned.augment.flip_p == 0.0 and aligned.augment.global_scale == (0.7, 1.0)
    assert aligned.augment.gray_p == 0.0  # one channel: nothing to gray


def test_multi_crop_and_cutmix_only_when_the_budget_allows_hundreds_of_passes():
    f = facts(device="cuda")
    few, many = auto_recipe(f, rate_for(100, f)), auto_recipe(f, rate_for(LONG_PASSES, f))
    assert (few.augment.n_global, few.augment.n_local, few.augment.cutmix_alpha) == (1, 0, 0.0)
    assert (many.augment.n_global, many.augment.n_local, many.augment.cutmix_alpha) == (2, 4, 0.5)
    assert many.model.dim == 192 and many.model.depth == 12


def test_the_batch_is_the_largest_that_still_gives_the_run_its_steps_and_the_lr_follows_its_square_root():
    cpu, gpu = facts(), facts(device="cuda")
    assert batch_and_lr(cpu, 128 * MIN_STEPS) == (128, pytest.approx(1.5e-3))
    assert batch_and_lr(cpu, 128 * MIN_STEPS - 1) == (64, pytest.approx(1.5e-3 / 2 ** 0.5))
    assert batch_and_lr(cpu, 10) == (32, pytest.approx(1.5e-3 / 2))  # never below 32
    assert batch_and_lr(gpu, 256 * MIN_STEPS) == (256, pytest.approx(5e-4))
    few_images = auto_recipe(facts(n=900), rate_for(100, facts(n=900)))  # 90,000 images seen: batch 32
    many_images = auto_recipe(facts(n=20000), rate_for(100, facts(n=20000)))
    assert (few_images.batch_size, many_images.batch_size) == (32, 128)
    assert few_images.lr < many_images.lr


def test_the_budget_and_the_evaluations_follow_the_passes():
    f = facts()
    config = auto_recipe(f, rate_for(80, f))
    assert config.minutes == 5.0 and config.eval_every == 80 // 8  # about eight evaluations
    assert config.epochs == 80  # over the estimated length, which the run's timing then fixes
    assert passes(f.minutes, f.n_train, rate_for(80, f)) == pytest.approx(80)
    assert describe(config, "auto") == ("auto recipe: 64 px, patch 8, dim 128, depth 4, 1 view, flips, batch 64, "
                                        "a 5 min budget")


@pytest.mark.parametrize("objective", ["instance", "contrastive", "supervised"])
def test_every_objective_trains_on_the_auto_recipe(objective):
    config = recipe(auto_recipe(facts(), rate_for(60, facts())).with_overrides(dataset="toy"), objective)
    build_objective(config, n_instances=100, n_classes=5)
    assert config.data_size == 73  # the supervised recipe stores 64 px crops at 73 px too


def test_plan_reads_a_folder_loads_it_once_at_the_chosen_side_and_measures_its_framing(tmp_path):
    folder = tmp_path / "photos"
    assert make_folder([str(folder), "--classes", "3", "--largest", "10", "--imbalance", "2"]) == 0
    loads = []

    def load(size):
        loads.append(size)
        return load_dataset(f"folder:{folder}", size=size)

    planned = plan(f"folder:{folder}", "cpu", 0.5, load)
    config, data = planned.config, planned.data
    assert loads == [config.data_size] and data.train.size == config.data_size
    assert config.dataset == f"folder:{folder}" and config.minutes == 0.5 and config.augment.flip_p == 0.5


def test_the_passes_are_what_the_minutes_leave_once_the_evaluations_are_paid():
    """Nine evaluations (eight planned and the random-init baseline) of 10 s take 90 s of a 5 min budget."""
    f = facts()
    timed = Throughput(rate_for(100, f).images_per_s, eval_s=10.0, batch=128)
    assert passes(f.minutes, f.n_train, timed) == pytest.approx(100 * (300 - 90) / 300)
    assert auto_recipe(f, timed).epochs == 70
    assert passes(f.minutes, f.n_train, Throughput(1000.0, eval_s=60.0, batch=128)) == 0.0  # never below nothing


def test_plan_times_the_batch_its_passes_chose_again(tmp_path, monkeypatch):
    """Timed at the largest batch, few images choose a small batch; the run's length is then fitted at that
    batch's own throughput (here half the images a second), with the side and views it chose."""
    folder = tmp_path / "photos"
    assert make_folder([str(folder), "--classes", "2", "--largest", "10", "--imbalance", "1"]) == 0
    timed = []

    def of(self, config):
        timed.append(config.batch_size)
        return Throughput(40.0 if config.batch_size == 128 else 20.0, eval_s=0.0, batch=config.batch_size)

    monkeypatch.setattr(Timing, "of", of)
    planned = plan(f"folder:{folder}", "cpu", 1.0, lambda size: load_dataset(f"folder:{folder}", size=size))
    n_train = len(planned.data.train)
    assert timed == [128, 32]  # photos: once at the largest batch before loading (the side), once at 32
    assert planned.config.batch_size == 32 and planned.config.model.image_size == 64
    assert planned.config.epochs == int(60 * 20.0 / n_train) and planned.config.augment.n_local == 0


def test_the_side_is_chosen_at_the_batch_its_passes_choose(tmp_path, monkeypatch):
    """64 px allows MIN_PASSES passes at batch 128's throughput but not at the smaller batch a short budget
    then chooses: the photos go to 32 px, and the run's length is timed again at that side."""
    folder = tmp_path / "photos"
    assert make_folder([str(folder), "--classes", "2", "--largest", "10", "--imbalance", "1"]) == 0
    timed = []

    def of(self, config):
        timed.append((config.model.image_size, config.batch_size))
        per_pass = 16 / 60  # images a second for one pass over the ~16 training images in 1 minute
        fast = config.batch_size == 128 or config.model.image_size == 32
        return Throughput((MIN_PASSES + 10 if fast else MIN_PASSES - 10) * per_pass, 0.0, config.batch_size)

    monkeypatch.setattr(Timing, "of", of)
    planned = plan(f"folder:{folder}", "cpu", 1.0, lambda size: load_dataset(f"folder:{folder}", size=size))
    assert timed[:2] == [(64, 128), (64, 32)] and timed[2][0] == 32
    assert planned.config.model.image_size == 32 and planned.config.model.patch_size == 8


def test_without_a_budget_nothing_is_timed(tmp_path, monkeypatch):
    """Without minutes the recipe has no passes to count: the machine is not timed at all."""
    folder = tmp_path / "photos"
    assert make_folder([str(folder), "--classes", "2", "--largest", "10", "--imbalance", "1"]) == 0
    monkeypatch.setattr(Timing, "of", lambda self, config: pytest.fail("timed without a budget"))
    planned = plan(f"folder:{folder}", "cpu", 0.0, lambda size: load_dataset(f"folder:{folder}", size=size))
    assert planned.config.epochs == auto_recipe_module.DEFAULT_EPOCHS and planned.config.minutes == 0.0


def test_a_budget_that_allows_one_pass_is_a_valid_one_epoch_recipe():
    """On a busy machine a minute may allow one pass: the warmup is cut to fit it (once it was refused)."""
    f = facts(n=2000, minutes=1.0)
    config = auto_recipe(f, rate_for(1.2, f))
    assert config.epochs == 1 and config.warmup_epochs == 0.25 and config.eval_every == 1
