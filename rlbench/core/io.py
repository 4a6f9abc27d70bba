"""Atomic file writes, hashing, and staged updates of several files. Nothing the suite writes is
ever left half-written.

One file is replaced atomically: a temporary file beside it, fsync, rename. Files that must change
together (the baseline files of an update run) go through a :class:`Staging`: while one is active
in a process, :func:`atomic_write_bytes` into the files it covers writes into its directory
instead, and reads resolved with :func:`staged_path` see that content. Code that writes one file
(:func:`rlbench.grid.findings.record`, :func:`rlbench.gate.idle.record`) thereby joins the update without
knowing of it. :meth:`Staging.commit` then writes a journal naming every staged file and renames
them into place; a process killed during the renames leaves the journal, and :func:`recover`
completes the renames (rolls forward). A staging directory without a journal never reached its
commit: :func:`recover` removes it once its owner is gone (rolls back), and no target was touched.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from rlbench.core.errors import BaselineError

JOURNAL = ".update-journal.json"
"""In the root: which staged files an interrupted commit was renaming into place."""
UPDATE_LOCK = ".update.lock"
"""In the root: held while staging is created, committed or recovered (one writer at a time)."""
STAGING_PREFIX = ".staging-"
_OWNER = ".owner"
"""In a staging directory: flock-held by the process that created it while that process lives."""
_BASE = ".base"
"""In a staging directory: each staged file's target as it was when first staged (``None``: absent)."""

_ACTIVE: list[Staging] = []


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def replace_dir(tmp: Path, dest: Path, old: Path) -> None:
    """Put the whole directory ``tmp`` in the place of ``dest`` by two renames on one file system.

    An existing ``dest`` moves to ``old`` first (an ``old`` left by an interrupted swap is removed
    before) and is removed once ``tmp`` is in place, so an interruption leaves the old directory (at
    ``dest`` or at ``old``) or the new one at ``dest``, never half of either.
    """
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.rename(dest, old)
    os.rename(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``.

    A path covered by an active :class:`Staging` is written into the staging directory instead.
    """
    path = Path(path)
    for staging in _ACTIVE:
        if staging.covers(path):
            staging.stage_bytes(path, data)
            return
    _write_atomic(path, data)


def staged_path(path: Path | str) -> Path:
    """Where ``path``'s current content is: its staged copy under an active staging, else itself."""
    path = Path(path)
    for staging in _ACTIVE:
        staged = staging.staged(path)
        if staged is not None:
            return staged
    return path


def read_stored_json(path: Path, record: str):
    """A stored JSON file's content (its staged copy, during an update), or None if it is absent.

    A file that does not parse raises a :class:`~rlbench.core.errors.BaselineError` naming it, with how
    to restore it (:func:`repair_hint`) and ``record``, the command that writes it again.
    """
    source = staged_path(path)
    if not source.exists():
        return None
    try:
        return json.loads(source.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BaselineError(f"{path} is corrupt ({exc}); {repair_hint(path, record)}") from None


def atomic_write_json(path: Path | str, obj) -> None:
    atomic_write_bytes(path, dump_json(obj))


def dump_json(obj, allow_nan: bool = False) -> bytes:
    """The suite's JSON layout: indented, sorted keys, one trailing newline."""
    return (json.dumps(obj, indent=1, sort_keys=True, allow_nan=allow_nan) + "\n").encode()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- what git knows of a file: the evidence a repair hint rests on ---------------------------------

def _git(path: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(path.parent), *args, "--", path.name], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(path: Path | str) -> str | None:
    """``"unchanged"`` or ``"changed"`` (against the last commit) for a file git tracks, ``"untracked"``
    inside a repository, None where git cannot tell (no git, not a repository)."""
    path = Path(path).absolute()
    tracked = _git(path, "ls-files", "--error-unmatch")
    if tracked is None or tracked.returncode not in (0, 1):
        return None  # 128: not a git repository
    if tracked.returncode == 1:
        return "untracked"
    diff = _git(path, "diff", "--quiet", "HEAD")
    if diff is None or diff.returncode not in (0, 1):
        return None
    return "changed" if diff.returncode == 1 else "unchanged"


def repair_hint(path: Path | str, record: str, where: str = "") -> str:
    """How to repair a broken stored file: ``git checkout`` where git tracks it, delete it and
    ``record`` it again (``where``: e.g. " on that machine") where git does not, both where there
    is no telling."""
    state = git_state(path)
    restore = f"restore it with `git checkout -- {path}`"
    again = f"delete it (`rm {path}`) and record it again with `{record}`{where}"
    if state in ("changed", "unchanged"):
        return restore
    if state == "untracked":
        return again
    return f"{restore}, or if it was never committed, {again}"


# -- staged updates of several files ---------------------------------------------------------------

@contextmanager
def update_lock(root: Path):
    """The root's update lock: one process at a time creates, commits or recovers a staging."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / UPDATE_LOCK, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Staging:
    """A directory under ``root`` where new contents of the files ``covers`` accepts wait for a commit.

    The process that :meth:`create`\\ s it owns it (a flock held until :meth:`close`); other
    processes of the same run (xdist workers) :meth:`join` it and only stage into it.
    """

    def __init__(self, root: Path, path: Path, covers: Callable[[Path], bool], owner=None):
        self.root = Path(root)
        self.path = Path(path)
        self._covers = covers
        self._owner = owner

    @classmethod
    def create(cls, root: Path, covers: Callable[[Path], bool]) -> Staging:
        root = Path(root)
        with update_lock(root):  # recover() never sees it before its owner lock is held
            path = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
            owner = open(path / _OWNER, "w")
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return cls(root, path, covers, owner)

    @classmethod
    def join(cls, root: Path, path: Path, covers: Callable[[Path], bool]) -> Staging:
        return cls(root, path, covers)

    def rel(self, target: Path) -> Path | None:
        """``target`` relative to the root if this staging covers it, else None."""
        target = Path(os.path.abspath(target))
        root = Path(os.path.abspath(self.root))
        if not target.is_relative_to(root):
            return None
        rel = target.relative_to(root)
        return rel if self._covers(rel) else None

    def covers(self, target: Path) -> bool:
        return self.rel(target) is not None

    def staged(self, target: Path) -> Path | None:
        rel = self.rel(target)
        if rel is None or not (self.path / rel).exists():
            return None
        return self.path / rel

    def stage_bytes(self, target: Path, data: bytes) -> None:
        rel = self.rel(target)
        assert rel is not None, f"{target} is not covered by {self.path}"
        base = self.path / _BASE / (str(rel) + ".json")
        if not base.exists():  # the target as this update found it: the base of a later merge
            before = self.root / rel
            old = before.read_bytes().decode("utf-8", "replace") if before.exists() else None
            _write_atomic(base, json.dumps({"content": old}).encode())
        _write_atomic(self.path / rel, data)

    def base_text(self, rel: Path) -> str | None:
        """The target's content when ``rel`` was first staged (None: it did not exist)."""
        return json.loads((self.path / _BASE / (str(rel) + ".json")).read_text())["content"]

    def files(self) -> list[Path]:
        """The staged files, relative to the root."""
        out = []
        for p in sorted(self.path.rglob("*")):
            rel = p.relative_to(self.path)
            if p.is_file() and rel.parts[0] not in (_OWNER, _BASE) and not p.name.endswith(".tmp"):
                out.append(rel)
        return out

    def activate(self) -> None:
        """From now on, covered writes of this process are staged here, and covered reads see them."""
        if self not in _ACTIVE:
            _ACTIVE.append(self)

    def deactivate(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    @contextmanager
    def active(self):
        """:meth:`activate` within the block (if not already active) and no longer after it."""
        was = self in _ACTIVE
        self.activate()
        try:
            yield self
        finally:
            if not was:
                self.deactivate()

    def commit(self) -> list[Path]:
        """Rename every staged file into place, as one journaled step. The caller holds :func:`update_lock`.

        Returns the files written. An exception during the renames leaves the journal: the next
        :func:`recover` completes them.
        """
        files = self.files()
        if not files:
            self.close()
            return []
        for d in {self.path / f.parent for f in files}:
            _fsync_dir(d)
        _write_atomic(self.root / JOURNAL, dump_json({"staging": self.path.name,
                                                      "files": [str(f) for f in files]}))
        _fsync_dir(self.root)
        _roll_forward(self.root, self.path, files)
        self.close()
        return files

    def close(self) -> None:
        """Drop whatever is still staged (nothing, after a commit) and release ownership."""
        self.deactivate()
        if self._owner is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self._owner.close()
            self._owner = None


def _roll_forward(root: Path, staging: Path, files: list[Path]) -> None:
    for rel in files:
        src, dst = staging / rel, root / rel
        if src.exists():  # else renamed before an interruption
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    for d in {(root / rel).parent for rel in files}:
        _fsync_dir(d)
    (root / JOURNAL).unlink()
    _fsync_dir(root)
    shutil.rmtree(staging, ignore_errors=True)


def _owner_gone(staging: Path) -> bool:
    try:
        with open(staging / _OWNER, "a") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return False
                raise
            fcntl.flock(fh, fcntl.LOCK_UN)
            return True
    except FileNotFoundError:
        return True


def recover(root: Path) -> list[str]:
    """Finish or undo what interrupted updates left under ``root``; one line per thing done.

    A journal means the commit was renaming: every file it names is staged complete, so the
    renames are completed. A staging directory whose owner is gone never reached its commit: it is
    removed, and the files it would have replaced are as they were. Stat calls only, unless there
    is something to do (a read-only checkout stays untouched).
    """
    root = Path(root)
    journal = root / JOURNAL
    if not journal.exists() and not any(root.glob(STAGING_PREFIX + "*")):
        return []
    notes = []
    with update_lock(root):
        if journal.exists():
            try:
                entry = json.loads(journal.read_text())
                staging, files = root / entry["staging"], [Path(f) for f in entry["files"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise BaselineError(f"{journal} (the journal of an interrupted update) is unreadable ({exc}); the "
                                    f"files it names may be half updated: check them with `git status {root}`, "
                                    f"restore them with `git checkout -- {root}`, then `rm {journal}`") from None
            _roll_forward(root, staging, files)
            notes.append(f"an update of {root} was interrupted while it replaced its files; completed it from "
                         f"its journal: {', '.join(map(str, files))} now hold that update's figures")
        for staging in sorted(root.glob(STAGING_PREFIX + "*")):
            if staging.is_dir() and _owner_gone(staging):
                staged = Staging(root, staging, lambda rel: True).files()
                shutil.rmtree(staging, ignore_errors=True)
                notes.append(f"an update of {root} was interrupted before it wrote anything; discarded what it "
                             f"had staged ({', '.join(map(str, staged)) or 'nothing'}): its files are as they were")
    return notes


def check_writable(directory: Path) -> None:
    """Create, rename and remove a file in ``directory`` (making it if needed); raise OSError if any fails.

    Tried rather than asked (``os.access``): root passes any permission check, a read-only mount does not.
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rlbench-write-check.", dir=directory)
    os.close(fd)
    try:
        os.replace(tmp, tmp + ".renamed")
        tmp += ".renamed"
    finally:
        os.unlink(tmp)
