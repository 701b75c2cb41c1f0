"""The ground floor every stage stands on: errors that mean bad input (:class:`InputError`),
atomic writes and disk-space checks, stopping on Ctrl-C or SIGTERM, handing freed memory back,
the strict base of every settings section, and :func:`~pipeline.core.lazy.lazy_exports` for the
packages' tables of names."""

from pipeline.core.lazy import lazy_exports

__all__ = [
    "InputError",
    "Interrupted",
    "LeakageError",
    "OutOfSpaceError",
    "OutputWriteError",
    "Strict",
    "atomic_path",
    "cancel_requested",
    "check_cancelled",
    "release_free_memory",
    "reserve_space",
    "short_list",
    "write_bytes",
    "write_figure",
    "write_json",
    "write_text",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "InputError": "errors",
        "Interrupted": "cancel",
        "LeakageError": "errors",
        "OutOfSpaceError": "errors",
        "OutputWriteError": "errors",
        "Strict": "settings",
        "atomic_path": "atomic",
        "cancel_requested": "cancel",
        "check_cancelled": "cancel",
        "release_free_memory": "memory",
        "reserve_space": "atomic",
        "short_list": "text",
        "write_bytes": "atomic",
        "write_figure": "atomic",
        "write_json": "atomic",
        "write_text": "atomic",
    },
)
