"""A tiny name -> object registry (timm's ``register_model`` idea, DomainBed without the list).

Names are the public API: suites, configs and the CLI refer to registered names only.
A registry made with ``entry_points="group"`` also holds what installed packages declare in
that entry-point group, imported the first time a name is looked up (``benchmark.plugins``).
"""
from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import BenchmarkError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, entry_points: str | None = None):
        self.kind = kind
        self._items: dict[str, T] = {}
        self.entry_points = entry_points  # e.g. "ltskeleton.methods"; None: closed registry
        self._loaded = entry_points is None

    def _load_installed(self) -> None:
        """Import the installed packages' entry points of this registry, once (lazily: a
        lookup, never an import of ours, pays for it)."""
        if not self._loaded:
            self._loaded = True
            from .plugins import load_entry_points

            load_entry_points(self.entry_points)

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: ``@REG.register("name")`` (defaults to the object's ``__name__``)."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "__name__")
            if key in self._items:
                raise ValueError(f"{self.kind} {key!r} is registered twice")
            self._items[key] = obj
            try:
                setattr(obj, "registry_name", key)
            except (AttributeError, TypeError):  # functions/builtins that refuse attributes
                pass
            return obj

        return deco

    def get(self, name: str) -> T:
        self._load_installed()
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            own = (f"; one of your own: --plugin FILE.py|MODULE, or an installed package's "
                   f"{self.entry_points!r} entry point" if self.entry_points else "")
            raise BenchmarkError(f"unknown {self.kind} {name!r}{hint} "
                                 f"(known: {', '.join(sorted(self._items))}){own}")
        return self._items[name]

    def build(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)  # type: ignore[operator]

    def names(self, pattern: str = "*") -> list[str]:
        self._load_installed()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._load_installed()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load_installed()
        return len(self._items)
