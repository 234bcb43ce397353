"""Assertions shared by the CLI tests."""


def assert_one_line_error(result, *needles: str) -> None:
    """A user error: non-zero exit and exactly one ``error:`` line holding every needle."""
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def fixture_bundle():
    """The bundle kept under tests/fixtures (a folder with a manifest.json)."""
    from pathlib import Path

    return next(p for p in (Path(__file__).parent / "fixtures").iterdir()
                if (p / "manifest.json").is_file())
