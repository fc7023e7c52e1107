"""Files and directories that dotagent creates are private to the user (SPEC S15.11).

Agent output, heartbeats and the audit log can hold secrets, so everything dotagent makes
under `$DOTAGENT_HOME` is created 0700 (directories) or 0600 (files), whatever the umask.
Every creation goes through `private_mkdir` or `open_private` (atomic writes in
`atomicfile` use the same modes), and `tighten_home` takes group and other bits away from
what an older version left behind.

Only dotagent's own places are ever changed. The home directory itself (when it already
exists), `agents/`, manifests, `plugins/`, `config.toml` and `secrets.env` belong to the user:
`doctor` reports loose modes on them, and nothing here touches them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from dotagent.errors import SymlinkRefused
from dotagent.paths import Home, link_inside_home

__all__ = ["DIR_MODE", "FILE_MODE", "LOOSE_BITS", "open_private", "private_mkdir",
           "refuse_links", "tighten", "tighten_home", "tighten_tree"]

DIR_MODE = 0o700
FILE_MODE = 0o600
LOOSE_BITS = 0o077  # any group or other permission


def refuse_links(path: Path) -> None:
    """Raise SymlinkRefused when `path`, or a directory on the way to it below the home's
    root, is a symlink: what dotagent writes under its home is never reached through a link
    (a planted `state -> /elsewhere` or `audit.log.lock -> ~/notes` must not make it write,
    lock or chmod anything outside). The home's root itself may be a link."""
    link = link_inside_home(path)
    if link is not None:
        raise SymlinkRefused(path, link)


def private_mkdir(path: Path) -> None:
    """`mkdir -p` where every directory created here is 0700, whatever the umask.

    Directories that already exist are left as they are: the home directory, when the user
    made it, keeps its mode (doctor warns when it is loose); dotagent's own older directories
    are tightened by `tighten_home`. Like `Path.mkdir(parents=True, exist_ok=True)`, a
    non-directory in the way raises FileExistsError; a symlink on the way below the home's
    root raises SymlinkRefused (nothing is created through it).
    """
    path = Path(path)
    refuse_links(path)
    _mkdir(path)


def _mkdir(path: Path) -> None:
    try:
        os.mkdir(path, DIR_MODE)
    except FileNotFoundError:
        if path.parent == path:
            raise
        _mkdir(path.parent)
        try:
            os.mkdir(path, DIR_MODE)
        except FileExistsError:  # created meanwhile by a concurrent process
            if not path.is_dir():
                raise
            return
    except FileExistsError:
        if not path.is_dir():
            raise
        return
    # The umask may have taken bits away (0o277 would leave an unusable 0500): set it exactly.
    os.chmod(path, DIR_MODE)


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT | O_CLOEXEC)` for a file of dotagent's own; returns the
    descriptor.

    A file created here is exactly 0600, whatever the umask (0o277 would leave a 0400 file
    that the next open for writing is refused). An existing regular file that group or
    others may use — left by an older version — loses those bits. A symlink is never
    followed: the file itself, or a directory on the way below the home's root, being one
    raises SymlinkRefused. With O_EXCL in `flags`, an existing file raises FileExistsError.
    """
    refuse_links(path)
    flags |= os.O_CLOEXEC | os.O_NOFOLLOW
    while True:
        try:
            # O_EXCL also refuses an existing symlink, dangling or not, without following it.
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL, FILE_MODE)
            created = True
        except FileExistsError:
            if flags & os.O_EXCL:
                raise
            try:
                fd = os.open(path, flags)
            except FileNotFoundError:
                continue  # removed between the two opens: create it after all
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise SymlinkRefused(path) from None
                raise
            created = False
        break
    try:
        if created:
            os.fchmod(fd, FILE_MODE)
        else:
            _tighten_fd(fd)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _tighten_fd(fd: int) -> None:
    st = os.fstat(fd)
    # Only regular files: a FIFO or a device is not ours to chmod.
    if stat.S_ISREG(st.st_mode) and st.st_mode & LOOSE_BITS:
        with contextlib.suppress(PermissionError):  # not the owner: nothing we may change
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & ~LOOSE_BITS)


def tighten(path: Path) -> None:
    """Take group and other bits away from one directory or regular file dotagent made.

    Symlinks are never followed, missing paths are ignored, and the owner's own bits are
    kept (tightening never loosens anything). Failures are ignored: this is hygiene, not a
    precondition of any command.
    """
    try:
        st = os.lstat(path)
        if (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)) and st.st_mode & LOOSE_BITS:
            os.chmod(path, stat.S_IMODE(st.st_mode) & ~LOOSE_BITS, follow_symlinks=False)
    except (OSError, NotImplementedError):
        pass


def tighten_tree(root: Path) -> None:
    """`tighten` a directory and everything below it, without following symlinks (a
    symlinked `root` is left alone, not entered)."""
    try:
        if not stat.S_ISDIR(os.lstat(root).st_mode):
            return
        entries = list(os.scandir(root))
    except OSError:
        return
    tighten(root)
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            continue
        if is_dir:
            tighten_tree(Path(entry.path))
        else:
            tighten(Path(entry.path))


def tighten_home(home: Home) -> None:
    """Make what dotagent created under the home private, as this version creates it.

    Run at the start of the commands that write (`run`, `audit repair`, `selfcheck --record`,
    later the daemon). Covers `state/` and `logs/` entirely, the audit log with its lock and
    torn-tail side files, and `daemon.sha256` — never the home directory itself, `agents/`,
    `plugins/`, `config.toml` or `secrets.env`.
    """
    root = home.root
    for tree in (home.state_dir, root / "logs"):
        tighten_tree(tree)
    audit = home.audit_log
    for path in (audit, audit.with_name(audit.name + ".lock"), root / "daemon.sha256"):
        tighten(path)
    with contextlib.suppress(OSError):
        for side in root.glob(f"{audit.name}.torn-*"):
            tighten(side)
