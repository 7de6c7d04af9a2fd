"""Model families: how a network's input is made and its outputs are read.

Looked up by the manifest's `family`; modules are imported only when used.
"""
import importlib

from appliance.errors import ModelError

FAMILIES = {
    "retinaface": "appliance.models.retinaface",
}


def load_family(name):
    try:
        module_name = FAMILIES[name]
    except KeyError:
        raise ModelError("unknown model family {!r}; known: {}".format(name, ", ".join(sorted(FAMILIES))))
    return importlib.import_module(module_name)
