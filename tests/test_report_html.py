"""The report as a person sees it: bundle links, next steps, plots, and report.html in a real
headless Chromium (loads offline, every image decodes, no text overflows at 1280 px)."""

import json
import shutil
from pathlib import Path

import pytest

from gtn_deploy.pipeline.report import rerender
from gtn_deploy.pipeline.report_tables import bundle_link, next_steps, render_markdown
from gtn_deploy.pipeline.report_check import check_page, find_chromium
from gtn_deploy.pipeline.report_plots import accuracy_points, render_plots

# From benchmarks/results/pipeline_quick: jetson (TensorRT), raspberry-pi-5 in report.json's
# older form (absolute bundle path, no runtime), x86-laptop with a long ImageNet-style arch
# and added later, local measured here.
FIXTURE = Path(__file__).parent / "fixtures" / "report" / "report.json"


@pytest.fixture(scope="module")
def data():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    shutil.copy(FIXTURE, out / "report.json")
    rerender(out / "report.json")
    return out


def _device(data, device):
    return next(d for d in data["devices"] if d["device"] == device)


def test_next_steps_copy_build_run_and_bench_on_the_device(data):
    jetson = next_steps(_device(data, "jetson-orin-nano"))
    assert jetson[0] == ("scp -r stages/bundle-jetson-orin-nano-d166085604b2/bundle \\\n"
                         "    user@jetson-orin-nano:gtn-jetson-orin-nano")
    assert any(s.startswith("./build_engine.sh") for s in jetson)
    assert "python3 run_trt.py" in jetson
    assert "gtnd bench . --backend tensorrt --out bench.json" in jetson
    pi = next_steps(_device(data, "raspberry-pi-5"))  # older report.json: from the profile
    assert "python3 run_onnx.py" in pi and not any("build_engine" in s for s in pi)
    assert pi[-1] == "gtnd bench . --out bench.json"
    local = next_steps(_device(data, "local"))  # the bundle is already on its device
    assert local[0] == "cd stages/bundle-local-ead9bdd77738/bundle" and "scp" not in local[0]


def test_bundle_links_are_relative_to_the_report(data, rendered):
    assert bundle_link(_device(data, "raspberry-pi-5")) == \
        "stages/bundle-raspberry-pi-5-2453946e9a0a/bundle"  # cut from the absolute path
    md = (rendered / "report.md").read_text()
    assert ("[stages/bundle-local-ead9bdd77738/bundle](stages/bundle-local-ead9bdd77738/"
            "bundle/)") in md
    assert "| local " in md and "x86-laptop (added later)" in md and "```sh" in md
    page = (rendered / "report.html").read_text()
    assert 'href="stages/bundle-jetson-orin-nano-d166085604b2/bundle/"' in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert render_markdown(data, []).count("![") == 0  # no plots: no dangling images


def test_verdict_badges_show_fits_and_over(data):
    from gtn_deploy.pipeline.report_html import render_html

    over = {**_device(data, "raspberry-pi-5"), "predicted_ms": 2.5}
    page = render_html({**data, "devices": [over, _device(data, "local")]}, {})
    assert '<td class="over"><span class="badge">OVER</span>29% over' in page
    assert '<td class="fits"><span class="badge">fits</span>52% headroom' in page
    assert "<img" not in page  # no matplotlib: tables only, nothing broken


def test_plots_are_self_contained_and_estimates_say_so(data, rendered):
    page = (rendered / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3  # accuracy, latency here, cost
    assert "(estimate)" in page and "an estimate, not a measurement" in page
    assert {p.name for p in rendered.glob("*.png")} == {"accuracy.png", "latency.png",
                                                         "cost.png"}


def test_seeds_give_error_bars(data):
    row = {**_device(data, "local"), "student_test_top1_seeds": [86.0, 87.0, 88.0],
           "ce_top1_seeds": [85.0]}
    p = accuracy_points(row)
    assert p["kd"] == pytest.approx(87.0) and p["kd_err"] == pytest.approx(1.0)
    assert p["ce"] == 85.0 and p["ce_err"] is None
    assert p["x"] == pytest.approx(row["predicted_ms"] / row["budget_ms"])
    assert set(render_plots({**data, "devices": [row]})) == {"accuracy", "latency", "cost"}


@pytest.mark.timeout(60)
def test_report_html_in_headless_chromium(rendered):
    if find_chromium() is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium; .ci/run does)")
    found = check_page(rendered / "report.html", width=1280)
    assert found["viewport_width"] == 1280
    assert found["network_requests"] == []  # offline: nothing fetched, the network is off
    assert len(found["images"]) == 3
    assert all(i["natural_width"] > 0 for i in found["images"]), found["images"]
    assert found["tables"] == 4
    assert found["overflowing_tables"] == [] and found["overflowing_cells"] == []
    assert found["page_width"] <= 1280  # no sideways scrolling either
    # the probe does see an overflow: the same page with a table wider than the window
    wide = rendered / "wide.html"
    wide.write_text((rendered / "report.html").read_text()
                    .replace("</style>", "table{min-width:2000px}</style>", 1))
    assert check_page(wide, width=1280)["overflowing_tables"]
