"""A small tmpfs for a test's store, and a file that fills it: how the
fault tests make a real full disk (ENOSPC from the kernel, not an
injected error).  Mounting needs root; `small_tmpfs` skips the test
otherwise.  Standard library only."""

import contextlib
import errno
import os
import subprocess
import tempfile

import pytest


def is_root():
    return hasattr(os, "geteuid") and os.geteuid() == 0


@contextlib.contextmanager
def small_tmpfs(size="8m", prefix="redrive-full-"):
    """Mounts a tmpfs of the given size on a new directory, yields the
    directory, unmounts and removes it at the end."""
    if not is_root():
        pytest.skip("needs root to mount a tmpfs for the store")
    mnt = tempfile.mkdtemp(prefix=prefix)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o",
                        "size=%s,mode=0700" % size, "redrive-test", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if p.returncode != 0:
        os.rmdir(mnt)
        pytest.skip("cannot mount a tmpfs: %s" % p.stdout.decode().strip())
    try:
        yield mnt
    finally:
        subprocess.run(["umount", mnt], check=False)
        try:
            os.rmdir(mnt)
        except OSError:
            pass


def fill(path):
    """Writes path until the file system is full; returns bytes written."""
    n = 0
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                n += f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        try:
            while True:  # the last bytes, a page at a time
                n += f.write(chunk[:512])
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return n
