"""Reading and writing files a user or a crash may have left in any state.

Every reader refuses what is not a regular file (a folder, a FIFO that would block forever, /dev/zero
that never ends) and anything over its size cap, judged on the opened descriptor so nothing can be
swapped in between. Writers are atomic: temp file, fsync, rename, fsync of the folder.
"""
import contextlib
import errno
import hashlib
import os
import stat
import tempfile

TEMP_MARK = ".tmp-"


class FileRefused(Exception):
    """A file that cannot be used; str() says why in words, naming the path."""


def _describe_kind(mode):
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _open_regular(path):
    """A descriptor open for reading on a regular file, or FileRefused."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FileRefused(os_reason(path, exc))
    except ValueError:  # a NUL byte in the name
        raise FileRefused("{!r}: not a valid path".format(path))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise FileRefused("{}: is {}, not a file".format(path, _describe_kind(mode)))
    except BaseException:
        os.close(fd)
        raise
    return fd


def os_reason(path, exc):
    if exc.errno == errno.ENOENT:
        return "{}: no such file".format(path)
    if exc.errno == errno.EACCES:
        return "{}: permission denied".format(path)
    if exc.errno == errno.EISDIR:
        return "{}: is a folder, not a file".format(path)
    if exc.errno == errno.ENOSPC:
        return "{}: no space left on device".format(path)
    return "{}: {}".format(path, exc.strerror or exc)


def write_bytes(path, data):
    """Write a user's output file (an image, a table): never over a folder or a device; OSError says why."""
    check_replaceable(path)
    with open(path, "wb") as f:
        f.write(data)


def read_regular_file(path, max_bytes):
    """The bytes of regular file `path`, at most `max_bytes` of them, or FileRefused."""
    fd = _open_regular(path)
    with os.fdopen(fd, "rb") as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise FileRefused(os_reason(path, exc))
    if len(data) > max_bytes:
        raise FileRefused("{}: larger than the {} limit".format(path, human_bytes(max_bytes)))
    return data


def read_text_file(path, max_bytes):
    """A regular UTF-8 text file, or FileRefused."""
    data = read_regular_file(path, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileRefused("{}: not UTF-8 text (byte {} at offset {})".format(path, hex(data[exc.start]), exc.start))


def check_regular_file(path):
    """FileRefused unless `path` is a regular file this process can open for reading."""
    os.close(_open_regular(path))


def human_bytes(count):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return "{:g} {}".format(round(count, 1), unit)
        count /= 1024.0


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_replaceable(path):
    """OSError unless `path` is absent or a regular file: a folder, a device, a FIFO or a socket is never
    replaced by a write (as root, a write over /dev/full would swap the device node for a file)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise OSError(errno.EEXIST, "is {}, not a file: not replaced".format(_describe_kind(mode)), path)


def atomic_write_bytes(path, data):
    """Replace `path` with `data` so that a crash leaves the old or the new content, never a mix."""
    check_replaceable(path)
    directory = os.path.dirname(path) or "."
    fd, temp = tempfile.mkstemp(prefix=os.path.basename(path) + TEMP_MARK, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    fsync_directory(directory)


def atomic_install(temp_path, path):
    """Move a finished temp file (same folder) into place durably."""
    with open(temp_path, "rb") as f:
        os.fsync(f.fileno())
    os.replace(temp_path, path)
    fsync_directory(os.path.dirname(path) or ".")


def free_bytes(directory):
    """Bytes free for this user in the file system holding `directory` (None if unknown)."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize
