"""Assertions shared by the CLI tests."""


def assert_one_line_error(result, *needles: str) -> None:
    """A user error: non-zero exit and exactly one ``error:`` line holding every needle."""
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def assert_one_error(result, *needles: str, absent: str | None = None) -> str:
    """Non-zero exit, no traceback, no escaped exception, exactly one ``error:`` line (other
    output may stand beside it) holding every needle and not ``absent``; returns that line."""
    output = result.output
    assert result.exit_code != 0, output
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in output, output
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert absent is None or absent not in errors[0], errors[0]
    return errors[0]


def fixture_bundle():
    """The bundle kept under tests/fixtures (a folder with a manifest.json)."""
    from pathlib import Path

    return next(p for p in (Path(__file__).parent / "fixtures").iterdir()
                if (p / "manifest.json").is_file())
