"""Small helpers every layer uses, one implementation each: atomic writes, camera keys, content hashes, registries."""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, TypeVar

from .errors import ConfigError, InputError
from .constants import CAMERA_PREFIX

# ---- atomic, durable writes ------------------------------------------------------------------------------------


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename or a new file in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike, write: Callable[[Path], None], durable: bool = True) -> Path:
    """Let ``write(tmp)`` write a temp file beside ``path``, then rename it over ``path``: a reader sees the old
    content or the new, never a part. ``durable`` (the default) fsyncs the file and the folder, so the new content
    survives a power cut once this returns. A failed ``write`` leaves ``path`` as it was and no temp file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        fsync_dir(path.parent)
    return path


def write_atomic(path: str | os.PathLike, data: bytes | str, durable: bool = True) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` as :func:`write_file` does."""
    raw = data.encode() if isinstance(data, str) else data
    return write_file(path, lambda tmp: tmp.write_bytes(raw), durable)


def move_dir(src: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move a finished folder ``src`` to ``target`` (same file system): an existing ``target`` is swapped out by a
    rename and removed only once the new one is in place (:func:`recover_dir` undoes a swap cut in between)."""
    src, target = Path(src), Path(target)
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(target, old)
    os.replace(src, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def staging_dir(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target`` to write it in before it is moved into place (``.<name>.tmp-*``)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def replace_dir(target: str | os.PathLike, fill: Callable[[Path], None]) -> Path:
    """Call ``fill(tmp_dir)``, fsync what it wrote, then move it to ``target`` (:func:`move_dir`): a reader never
    sees a half-written folder, and once this returns the new folder survives a power cut."""
    target = Path(target).expanduser().resolve()
    tmp = staging_dir(target)
    try:
        fill(tmp)
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        return move_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


PARTIAL = re.compile(r"^\..+\.(tmp-\w+|old-[0-9a-f]{8}|\w+\.tmp)$")
"""Names of what a write killed midway leaves: :func:`staging_dir` folders, :func:`move_dir` old copies and
:func:`write_file` temp files."""


def recover_dir(target: str | os.PathLike) -> None:
    """Undo a :func:`move_dir` swap cut between its two renames (``target`` gone, its old copy left)."""
    target = Path(target)
    olds = sorted(target.parent.glob(f".{target.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if not target.exists() and olds:
        os.replace(olds[-1], target)


def remove_partial(folder: str | os.PathLike) -> list[str]:
    """Remove what writes killed midway left directly in ``folder`` (:data:`PARTIAL`), after recovering any folder
    a cut swap left without its target; returns the names removed. Call it only while nothing writes there."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    for old in folder.glob(".*.old-*"):
        name = old.name[1:].rsplit(".old-", 1)[0]
        recover_dir(folder / name)
    removed = []
    for p in sorted(folder.iterdir()):
        if PARTIAL.match(p.name):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            removed.append(p.name)
    return removed


def jsonable(obj: Any) -> Any:
    """``json.dumps(..., default=jsonable)``: what JSON lacks as what it has (arrays, tensors and numpy scalars as
    lists or numbers, paths as strings); TypeError for anything else."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


class ProcessLock:
    """An exclusive lock on ``path`` held by this process until :meth:`release` (or its death, ``kill -9`` too:
    the kernel drops it). ``ProcessLock.take(path, what)`` returns the lock, or says who holds it: the holder
    writes ``who`` into the file, and :class:`ConfigError` quotes it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    @classmethod
    def take(cls, path: str | os.PathLike, who: str, refusal: str) -> "ProcessLock":
        """Lock ``path`` (created when missing) and write ``who`` into it; ConfigError ``refusal`` + the holder's
        ``who`` when another process holds it. Linux and macOS (flock)."""
        import fcntl

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "a process that has not said who"
            os.close(fd)
            raise ConfigError(f"{refusal} (held by {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{who}\n".encode(), 0)
        return cls(path, fd)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the only descriptor drops the lock
            self._fd = -1


# ---- numbers from outside -------------------------------------------------------------------------------------
def check_finite(name: str, value: Any) -> float:
    """``value`` as a float; InputError naming ``name`` when it is not a finite number (NaN, inf: stored, they would
    break every tool that reads them back)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name}={value!r}: must be a number") from None
    if not math.isfinite(number):
        raise InputError(f"{name}={value!r}: must be a finite number")
    return number


# ---- camera keys -----------------------------------------------------------------------------------------------


def full_key(name: str) -> str:
    """``front`` -> ``observation.images.front``; a key with a dot is already full (LeRobot's single camera is
    ``observation.image``)."""
    return name if "." in name else CAMERA_PREFIX + name


def short_key(name: str) -> str:
    """``observation.images.front`` -> ``front``."""
    return name.removeprefix(CAMERA_PREFIX)


# ---- content hashes --------------------------------------------------------------------------------------------
def content_hash(paths: Iterable[str | os.PathLike], length: int = 12) -> str:
    """The first ``length`` hex digits of sha256 over the files' bytes, in order: stable across machines, different
    for any change of content."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


# ---- names a person typed ---------------------------------------------------------------------------------------
def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the known name closest to a mistyped ``name``, or ``""`` when none is close."""
    import difflib

    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


# ---- registries ------------------------------------------------------------------------------------------------
T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one extension point (encoders, backends, policies, store engines, commands): ``register``
    adds, ``get`` finds, and an unknown name gets an error that lists the known ones. A name ending in ``:`` is a
    prefix: ``get("hf:org/model")`` returns the ``hf:`` entry. An entry may be a ``"module:attribute"`` string,
    imported on first use (so registering costs no import)."""

    def __init__(self, what: str, error: type[Exception] = ConfigError) -> None:
        self.what, self.error = what, error
        self._entries: dict[str, T | str] = {}

    def register(self, name: str, entry: T | str | None = None):
        """``registry.register("name", entry)``, or ``@registry.register("name")`` on a function or class."""
        if entry is not None:
            self._entries[name] = entry
            return entry

        def add(obj: T) -> T:
            self._entries[name] = obj
            return obj
        return add

    def names(self) -> list[str]:
        return list(self._entries)

    def known(self) -> str:
        """The names, as an error message lists them (a prefix as ``prefix:<name>``)."""
        return ", ".join(n + ("<name>" if n.endswith(":") else "") for n in self._entries)

    def key(self, name: str) -> str | None:
        """The entry ``name`` selects (itself, or the prefix it starts with), None when none does."""
        if name in self._entries:
            return name
        return next((p for p in self._entries if p.endswith(":") and name.startswith(p)), None)

    def __contains__(self, name: str) -> bool:
        return self.key(name) is not None

    def get(self, name: str) -> T:
        key = self.key(name)
        if key is None:
            hint = did_you_mean(name, self._entries)
            raise self.error(f"unknown {self.what} {name!r}{hint}; known: {self.known()}")
        entry = self._entries[key]
        if isinstance(entry, str):  # "module:attribute", imported now
            module, _, attr = entry.partition(":")
            target: Any = importlib.import_module(module)
            for part in attr.split("."):  # "module:Class.method"
                target = getattr(target, part)
            entry = self._entries[key] = target
        return entry  # type: ignore[return-value]
