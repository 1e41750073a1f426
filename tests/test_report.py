"""The report: built from a smoke run, self-contained, escaped; and TensorBoard logging."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from kdlens.cli import main
from kdlens.report import render_report
from tests.conftest import SMOKE
from tests.test_explain import _inputs

IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _images(page: str) -> list[np.ndarray]:
    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("L"))
        for b in IMG.findall(page)
    ]


def _self_contained(page: str) -> None:
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "@import" not in page and "@font-face" not in page and "url(" not in page


def test_smoke_run_writes_report_and_metrics_keys(smoke_run):
    out, metrics = smoke_run
    page = (out / "report.html").read_text()
    _self_contained(page)
    assert page.index('<h2 id="summary">Summary</h2>') < page.index('<h2 id="dark-knowledge')
    contents = page[page.index("<nav") : page.index("</nav>")]
    assert '<a href="#summary">Summary</a>' in contents and "#readable-students" in contents
    images = _images(page)
    assert len(images) == len(list((out / "figures").glob("*.png"))) >= 8
    for img in images:  # decodes, has pixels, and is not a blank canvas
        assert img.size > 0 and img.std() > 1
    for name in ("scratch", "kd"):
        m = metrics["models"][name]
        assert set(m["attribution_agreement"]) == {"spearman", "cosine", "topk_overlap"}
        assert 0 <= m["attribution_agreement"]["topk_overlap"] <= 1
        assert 0 <= m["dark_knowledge_distance"] <= 1 and 0 <= m["deletion_auc"] <= 1
    explain = json.loads((out / "explain.json").read_text())
    assert explain["attributions"]["n_examples"] == 32  # smoke.yaml keeps it small
    assert len(explain["dark_knowledge"]["entropy"]["teacher"]) == 20
    assert {"explain", "report"} <= set(metrics["timings"])


def test_report_command_on_a_folder_with_extra_models(smoke_run, tmp_path, capsys):
    """Models added by other stages: torch ones if rebuildable, others from saved logits."""
    src, _ = smoke_run
    run = tmp_path / "run"
    shutil.copytree(src, run)
    for name in ("explain.json", "report.html"):
        (run / name).unlink()
    shutil.rmtree(run / "figures")
    metrics = json.loads((run / "metrics.json").read_text())
    logits = load_file(str(run / "test_logits.safetensors"))
    # "tree" has predictions but no torch model; "ghost" has neither; "kd2" is a student copy.
    logits["tree"] = logits["kd"] + 0.5 * torch.randn_like(logits["kd"])
    save_file(logits, str(run / "test_logits.safetensors"))
    shutil.copy(run / "checkpoints" / "kd.safetensors", run / "checkpoints" / "kd2.safetensors")
    # A stage that adds a model records what it is; the report rebuilds it from that record.
    records = json.loads((run / "models.json").read_text())
    records["kd2"] = {**records["kd"], "name": "kd2", "weights": "checkpoints/kd2.safetensors"}
    (run / "models.json").write_text(json.dumps(records))
    for name in ("tree", "ghost", "kd2"):
        metrics["models"][name] = {"accuracy": 0.5, "params": 1}
    (run / "metrics.json").write_text(json.dumps(metrics))

    start = time.perf_counter()
    assert main(["report", str(run), "--set", "explain.n_examples=16"]) == 0
    assert time.perf_counter() - start < 120  # seconds, even on a busy 2-core machine
    assert "report.html" in capsys.readouterr().out
    explain = json.loads((run / "explain.json").read_text())
    assert explain["attributions"]["n_examples"] == 16
    readable = {"soft_tree_scratch", "soft_tree_kd"}  # rebuilt from their records
    assert set(explain["torch_models"]) == {"teacher", "scratch", "kd", "kd2"} | readable
    # Every model with saved test logits (readable and int8 students too) gets dark knowledge.
    assert {"teacher", "scratch", "kd", "kd2", "tree"} <= set(explain["models"])
    assert "ghost" not in explain["models"]
    assert explain["attributions"]["agreement"]["kd2"] == explain["attributions"]["agreement"]["kd"]
    updated = json.loads((run / "metrics.json").read_text())["models"]
    assert "dark_knowledge_distance" in updated["tree"] and "deletion_auc" not in updated["tree"]
    assert updated["ghost"] == {"accuracy": 0.5, "params": 1}
    page = (run / "report.html").read_text()
    assert "ghost" in page and "tree" in page
    _self_contained(page)
    # Redraw from saved JSON only.
    (run / "report.html").unlink()
    assert main(["report", str(run), "--render-only"]) == 0 and (run / "report.html").is_file()


def test_rows_follow_the_records_and_the_page_has_a_contents_list():
    from kdlens.report.html import with_contents
    from kdlens.report.order import reading_order, summary_rows

    readable = {"role": "readable", "trained_with": "labels"}
    models = {
        "kd_int8": {"role": "deployed", "train_seconds": 0.0},
        "tree_scratch": {**readable, "family": "tree"},
        "soft_tree_scratch": {**readable, "family": "soft_tree"},
        "soft_tree_kd": {**readable, "family": "soft_tree", "trained_with": "teacher"},
        "tree_kd": {**readable, "family": "tree", "trained_with": "teacher"},
        "scratch": {"role": "student", "trained_with": "labels", "train_seconds": 2.5},
        "kd": {"role": "student", "trained_with": "teacher"},
        "teacher": {"role": "teacher", "train_seconds": 0.0},
    }
    assert reading_order(models) == [
        "teacher", "kd", "scratch", "tree_kd", "tree_scratch", "soft_tree_kd",
        "soft_tree_scratch", "kd_int8",
    ]  # fmt: skip
    seconds = {n: m["train_seconds"] for n, m in summary_rows(models)}
    assert seconds["teacher"] is None and seconds["kd_int8"] is None and seconds["scratch"] == 2.5
    page = with_contents("<h1>t</h1><h2>A &amp; b</h2><p>x</p><h2>A &amp; b</h2>")
    assert page.startswith("<h1>t</h1><nav")
    assert '<a href="#a-b">A &amp; b</a>' in page and '<h2 id="a-b">' in page
    assert '<a href="#a-b-2">' in page and '<h2 id="a-b-2">' in page


def test_report_command_errors_are_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert main(["report", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path), "--set", "data.name=wine"]) == 2
    err = capsys.readouterr().err
    assert err.count("kdlens: error:") == 3 and "Traceback" not in err
    assert "only change explain.*" in err


def _evil_report(tmp_path):
    from kdlens.explain import compute_explanations

    evil = "<script>alert(1)</script>"
    inp = _inputs(7, class_names=[evil, "b&c", "$x$"])
    inp.test_logits = {"teacher": inp.test_logits["teacher"], "kd": inp.test_logits["kd"]}
    explain = compute_explanations(inp)
    metrics = {
        "dataset": {"name": "<i>data</i>"},
        "models": {"teacher": {"accuracy": 1.0}, "kd": {}},
    }
    return render_report(tmp_path, explain, metrics), evil


def test_class_names_and_user_text_are_escaped(tmp_path):
    path, evil = _evil_report(tmp_path)
    page = path.read_text()
    assert evil not in page and "<i>data</i>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "b&amp;c" in page
    _self_contained(page)
    assert all(img.size > 0 for img in _images(page))


CHROMIUM = next(
    (
        b
        for b in ("chromium", "chromium-browser", "google-chrome", "chrome", "headless_shell")
        if shutil.which(b)
    ),
    None,
)


# Appended to a copy of the page (the report itself has no scripts): after the page has loaded,
# it writes what a reader would meet into the DOM, which --dump-dom prints.
PROBE = """<script>
window.addEventListener("load", () => {
  const broken = [...document.images]
    .filter((i) => !(i.complete && i.naturalWidth > 0)).map((i) => i.alt);
  const links = [...document.querySelectorAll("nav.contents a")].map((a) => a.getAttribute("href"));
  const dead = links.filter((h) => !h.startsWith("#") || !document.getElementById(h.slice(1)));
  const out = document.createElement("pre");
  out.id = "kdlens-probe";
  out.textContent = JSON.stringify({images: document.images.length, broken, links, dead});
  document.body.appendChild(out);
});
</script>"""


def _open_in_chromium(page: Path, tmp_path: Path) -> tuple[dict, list[str]]:
    """What the probe saw, and the page's console messages, in headless Chromium."""
    probed = tmp_path / f"probed_{page.parent.name}.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            "--dump-dom",
            probed.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="kdlens-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, "the page never finished loading"
    console = [ln for ln in result.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    return json.loads(html.unescape(found.group(1))), console


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not on PATH")
def test_smoke_report_in_headless_chromium(smoke_run, tmp_path):
    """No console errors, every image decodes, every contents link lands on a section."""
    out, _ = smoke_run
    seen, console = _open_in_chromium(out / "report.html", tmp_path)
    assert not console, console
    assert seen["images"] >= 8 and not seen["broken"], seen
    assert {"#summary", "#readable-students"} <= set(seen["links"]) and not seen["dead"], seen


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not on PATH")
def test_escaped_report_runs_no_script_in_headless_chromium(tmp_path):
    path, evil = _evil_report(tmp_path)
    seen, console = _open_in_chromium(path, tmp_path)
    assert not console, console  # the class name's alert(1) stays text
    assert seen["images"] >= 8 and not seen["broken"] and not seen["dead"], seen


def test_run_with_tensorboard_writes_one_event_run_per_model(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    args = ["run", "--config", str(SMOKE), "--out", str(out), "--quiet", "--tensorboard"]
    assert main([*args, "--set", "explain.enabled=false"]) == 0
    assert not (out / "report.html").exists()
    for model in ("teacher", "scratch", "kd"):
        acc = EventAccumulator(str(out / "tb" / model))
        acc.Reload()
        tags = set(acc.Tags()["scalars"])
        assert {"loss/loss", "accuracy/train_accuracy", "accuracy/val_accuracy", "lr"} <= tags
        assert [e.step for e in acc.Scalars("lr")] == [1, 2]  # smoke: 2 epochs
    assert "loss/kd" in set(EventAccumulator(str(out / "tb" / "kd")).Reload().Tags()["scalars"])


def test_tabular_run_reports_bars_and_no_grad_cam(tmp_path):
    from kdlens.config import ExplainConfig
    from kdlens.data import Normalizer
    from kdlens.explain import ExplainInputs, compute_explanations
    from kdlens.models import create_model

    torch.manual_seed(0)
    x, y = torch.randn(50, 6), torch.randint(0, 3, (50,))
    models = {n: create_model("mlp", (6,), 3, hidden=[8]).eval() for n in ("teacher", "kd")}
    with torch.no_grad():
        logits = {n: m(x) for n, m in models.items()}
    inp = ExplainInputs(
        x=x,
        y=y,
        normalizer=Normalizer(torch.zeros(6), torch.ones(6)),
        kind="tabular",
        class_names=["a", "b", "c"],
        feature_names=[f"<f{i}>" for i in range(6)],
        temperature=2.0,
        config=ExplainConfig(
            n_examples=20, n_show=2, ig_steps=4, deletion_steps=3, infidelity_samples=2
        ),
        test_logits=logits,
        models=models,
    )
    explain = compute_explanations(inp)
    assert "grad_cam" not in explain["attributions"]["maps"]["teacher"]
    assert len(explain["attributions"]["maps"]["kd"]["saliency"][0]) == 6  # one value per feature
    page = render_report(tmp_path, explain, {"models": {"teacher": {}, "kd": {}}}).read_text()
    assert len(_images(page)) >= 8 and "<f0>" not in page
