"""The real app in a real browser: start it, train a short run from the UI, watch the curves and the
UMAP update, classify an example image. Screenshots land in docs/screenshots/ (the README shows one)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
EXAMPLE = ROOT / "assets" / "examples" / "sneaker.png"
EXAMPLE_2 = ROOT / "assets" / "examples" / "bag.png"  # a different file, so the upload changes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_url(tmp_path):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, "-m", "demo.app", "--port", str(port), "--runs-dir",
                             str(tmp_path / "runs")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read()
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            assert time.monotonic() < deadline, "the app did not come up"
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=60)


def click_a_point_until(page, done, attempts=20):
    page.locator("#umap-plot").scroll_into_view_if_needed()  # mouse clicks land only inside the viewport
    for _ in range(attempts):
        box = page.locator("#umap-plot .scatterlayer .point").first.bounding_box()
        if box is not None:
            x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
            page.mouse.move(x, y)
            page.mouse.click(x, y)
        page.wait_for_timeout(1000)
        if done():
            return
    raise AssertionError("clicking a UMAP point never showed its image")


@pytest.mark.skipif(not Path(CHROMIUM).exists(),
                    reason="Debian's chromium is not installed (scripts/setup.sh installs it as root)")
def test_train_watch_and_classify_in_a_browser(app_url):
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        expect(page.locator("#status")).to_contain_text("Nothing running", timeout=60_000)

        # the default dataset (fashion), three epochs
        page.locator("#epochs input").fill("3")
        page.locator("#start").click()
        expect(page.locator("#status")).to_contain_text("running", timeout=60_000)
        # the loss curve draws as steps arrive; the UMAP plot draws its first layout after an epoch
        expect(page.locator("#training-plot .scatterlayer .trace").first).to_be_visible(timeout=120_000)
        expect(page.locator("#status")).to_contain_text("completed", timeout=300_000)
        point = page.locator("#umap-plot .scatterlayer .point").first
        expect(point).to_be_visible(timeout=120_000)
        page.screenshot(path=str(SHOTS / "trained.png"), full_page=True)

        # a click on a point shows that training image (retried: a late UMAP layout redraws the plot)
        click_a_point_until(page, lambda: page.locator("#thumb img").count() > 0)
        expect(page.locator("#thumb img")).to_be_visible()

        page.locator("#upload input[type=file]").set_input_files(str(EXAMPLE))
        expect(page.locator("#top5")).to_contain_text("%", timeout=60_000)
        expect(page.locator("#method")).to_contain_text("kNN vote", timeout=10_000)
        page.locator("#top5").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "classified.png"), full_page=True)

        # stage 2 on the same run: fine-tune for two epochs, then the class head classifies
        page.locator("#finetune-epochs input").fill("2")
        page.locator("#finetune").click()
        expect(page.locator("#status")).to_contain_text("test top-1", timeout=300_000)
        expect(page.locator("#knn-plot")).to_contain_text("fine-tuning", timeout=30_000)  # the stage marker
        page.get_by_text("Where the class head errs").click()
        expect(page.locator("#confusion-plot .heatmaplayer")).to_be_visible(timeout=30_000)
        page.locator("#upload input[type=file]").set_input_files(str(EXAMPLE_2))
        expect(page.locator("#method")).to_contain_text("fine-tuned class head", timeout=60_000)
        page.locator("#confusion-plot").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "finetuned.png"), full_page=True)
        browser.close()
