"""Enough of a TOML writer for test configs: tables of strings, numbers and booleans."""
import json


def value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)


def dumps(document):
    lines = []
    for table, values in document.items():
        lines.append("[{}]".format(table))
        lines.extend("{} = {}".format(k, value(v)) for k, v in values.items())
        lines.append("")
    return "\n".join(lines)
