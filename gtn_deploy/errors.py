"""User-facing errors.

Every error a user can cause is a GtnError whose message is one clear line: what is wrong,
where (file, field) and what would be valid. The CLI prints it and exits non-zero; nothing
else is shown. Bugs stay ordinary exceptions, with their tracebacks.
"""


class GtnError(Exception):
    """Base class: the message is shown to the user as is."""

    exit_code = 1


class UsageError(GtnError):
    """A bad flag value, an unknown name or an impossible combination."""

    exit_code = 2


class ProfileError(GtnError):
    """A device profile that cannot be found or does not validate."""

    exit_code = 2


class ArchError(GtnError):
    """An architecture that does not belong to its search space."""

    exit_code = 2


class SearchError(GtnError):
    """No architecture of the space meets the budget."""


class CheckpointError(GtnError):
    """A checkpoint or plan file that is missing, corrupt or mismatched."""


class DataError(GtnError):
    """A dataset that cannot be found or read."""


class ExportError(GtnError):
    """An export or parity gate that failed."""


class BundleError(GtnError):
    """A bundle that is malformed or whose hashes do not match."""


class BenchError(GtnError):
    """A benchmark that cannot run as asked (missing backend, wrong device)."""


class PathError(GtnError):
    """A file or folder that cannot be read or written: the wrong kind (a folder where a
    file is expected, a file where a folder is), not permitted, read-only, full or too big."""


class MissingDependencyError(GtnError):
    """An optional dependency that is not installed; the message says what to install."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise a MissingDependencyError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{module} is not installed ({exc}); install it with: pip install 'gtn-deploy[{extra}]'"
        ) from None
