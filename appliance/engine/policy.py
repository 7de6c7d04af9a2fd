"""Which precision an engine is built in, and why; never a silent change of what was asked.

auto: INT8 where the platform has fast INT8 and an INT8 source (calibration table / Q/DQ model)
exists, else FP16 where it has fast FP16, else FP32. An explicit request that cannot be met falls to
the next precision with a fallback_reason, or, strictly, is refused.
"""
from typing import NamedTuple, Optional

from appliance.errors import UsageError

PRECISIONS = ("int8", "fp16", "fp32")

Capabilities = NamedTuple("Capabilities", [
    ("fast_int8", bool), ("fast_fp16", bool),
    ("int8_unavailable", Optional[str]),   # why INT8 cannot be built here (no table, ...), or None
    ("fp16_unavailable", Optional[str]),
])

Decision = NamedTuple("Decision", [("precision", str), ("fallback_reason", Optional[str])])


class PrecisionRefused(UsageError):
    pass


def why_not(precision, capabilities):
    """The reason `precision` cannot be built here, or None if it can."""
    if precision == "int8":
        if not capabilities.fast_int8:
            return "this platform has no fast INT8"
        return capabilities.int8_unavailable
    if precision == "fp16":
        if not capabilities.fast_fp16:
            return "this platform has no fast FP16"
        return capabilities.fp16_unavailable
    return None


def choose(requested, capabilities, strict=False):
    if requested == "auto":
        for precision in PRECISIONS:
            if why_not(precision, capabilities) is None:
                return Decision(precision, None)
    if requested not in PRECISIONS:
        raise UsageError("precision must be auto, int8, fp16 or fp32, got {!r}".format(requested))
    reason = why_not(requested, capabilities)
    if reason is None:
        return Decision(requested, None)
    if strict:
        raise PrecisionRefused("{} was requested but {}".format(requested.upper(), reason))
    fallback = next_precision(requested, capabilities)
    return Decision(fallback, "{} requested but {}".format(requested.upper(), reason))


def next_precision(precision, capabilities):
    """The next lower precision that this platform can build (FP32 always can)."""
    for candidate in PRECISIONS[PRECISIONS.index(precision) + 1:]:
        if why_not(candidate, capabilities) is None:
            return candidate
    return "fp32"
