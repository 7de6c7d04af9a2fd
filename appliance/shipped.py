"""Where the files facewatch ships (engines/, examples/) are: the source tree, or where pip put them.

A wheel installs them under PREFIX/share/facewatch/ with the layout of the source tree, so one relative
path names a file in both.
"""
import os
import site
import sys
import sysconfig

SOURCE_TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_roots():
    """Folders that may hold engines/ and examples/, most specific first, without repeats."""
    roots = [SOURCE_TREE,
             os.path.join(sys.prefix, "share", "facewatch"),
             os.path.join(sysconfig.get_path("data"), "share", "facewatch"),
             os.path.join(getattr(site, "USER_BASE", None) or "", "share", "facewatch"),
             "/usr/local/share/facewatch",
             "/usr/share/facewatch"]
    unique = []
    for root in roots:
        if root not in unique:
            unique.append(root)
    return unique


def find(relative):
    """The first existing ROOT/relative, or None."""
    for root in data_roots():
        path = os.path.join(root, relative)
        if os.path.exists(path):
            return path
    return None


def candidates(relative):
    return [os.path.join(root, relative) for root in data_roots()]


def example_config():
    """The shipped example configuration (every key with its default), or its source-tree path."""
    return find(os.path.join("examples", "facewatch.toml")) or os.path.join(SOURCE_TREE, "examples", "facewatch.toml")
