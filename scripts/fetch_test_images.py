#!/usr/bin/env python3
"""Fetch test-only images that may not be committed (license unclear) into .cache/test-images/.

    group.jpg  a six-person group photo shipped in the insightface 2.1 source package
               (insightface/data/images/t1.jpg); used only to check that every face is found.
"""
import glob
import os
import subprocess
import sys
import tarfile
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(REPO_ROOT, ".cache", "test-images")
GROUP_PHOTO = os.path.join(TARGET, "group.jpg")


def fetch_group_photo():
    if os.path.isfile(GROUP_PHOTO):
        return GROUP_PHOTO
    os.makedirs(TARGET, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                               "--no-binary=:all:", "-d", scratch, "insightface==2.1"])
        with tarfile.open(glob.glob(os.path.join(scratch, "insightface-*.tar.gz"))[0]) as sdist:
            member = next(m for m in sdist.getmembers() if m.name.endswith("data/images/t1.jpg"))
            data = sdist.extractfile(member).read()
    with open(GROUP_PHOTO + ".tmp", "wb") as f:
        f.write(data)
    os.replace(GROUP_PHOTO + ".tmp", GROUP_PHOTO)
    return GROUP_PHOTO


if __name__ == "__main__":
    print(fetch_group_photo())
