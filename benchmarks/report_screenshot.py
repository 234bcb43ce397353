"""Re-render a pipeline run's report from its report.json and screenshot report.html at
1280 px in headless Chromium (the committed results/pipeline_quick/report_screenshot.png).

    python benchmarks/report_screenshot.py [RUN_DIR]   # default: results/pipeline_quick
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path, default=RESULTS / "pipeline_quick")
    ap.add_argument("--width", type=int, default=1280)
    args = ap.parse_args()
    from gtn_deploy.pipeline.report import rerender
    from gtn_deploy.pipeline.report_check import screenshot

    rerender(args.run_dir / "report.json")
    found = screenshot(args.run_dir / "report.html", args.run_dir / "report_screenshot.png",
                       width=args.width)
    print(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
