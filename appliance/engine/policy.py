"""Which precision an engine is built in, and why; never a silent change of what was asked.

auto: INT8 where the platform has fast INT8 and an INT8 source (calibration table / Q/DQ model)
exists, else FP16 where it has fast FP16, else FP32; on a backend that measures (ONNX Runtime), every
precision it can build is a candidate and the fastest measured wins (appliance.engine.manager). An
explicit request that cannot be met falls to the next precision with a fallback_reason, or, strictly,
is refused.
"""
from typing import NamedTuple, Optional

from appliance.backends import AUTO, PRECISION_CHOICES, PRECISIONS
from appliance.backends.base import Capabilities  # noqa: F401 - the policy's input, declared with the backends
from appliance.errors import UsageError

Decision = NamedTuple("Decision", [("precision", str), ("fallback_reason", Optional[str]), ("choice_reason", str)])


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


def buildable(capabilities):
    """The precisions this platform can build, fastest kind first."""
    return [precision for precision in PRECISIONS if why_not(precision, capabilities) is None]


def choose(requested, capabilities, strict=False):
    if requested == AUTO:
        precision = buildable(capabilities)[0]
        return Decision(precision, None, auto_reason(precision, capabilities))
    if requested not in PRECISIONS:
        raise UsageError("precision must be {} or {}, got {!r}".format(
            ", ".join(PRECISION_CHOICES[:-1]), PRECISION_CHOICES[-1], requested))
    reason = why_not(requested, capabilities)
    if reason is None:
        return Decision(requested, None, "{} requested".format(requested.upper()))
    if strict:
        raise PrecisionRefused("{} was requested but {}".format(requested.upper(), reason))
    fallback = next_precision(requested, capabilities)
    why = "{} requested but {}".format(requested.upper(), reason)
    return Decision(fallback, why, why)


def auto_reason(precision, capabilities):
    """Why `auto` lands on `precision` by the platform's flags."""
    skipped = ["{}: {}".format(p.upper(), why_not(p, capabilities)) for p in PRECISIONS[:PRECISIONS.index(precision)]]
    if not skipped:
        return "auto: the platform has fast {}".format(precision.upper())
    return "auto: {} ({})".format(precision.upper(), "; ".join(skipped))


def next_precision(precision, capabilities):
    """The next lower precision that this platform can build (FP32 always can)."""
    for candidate in PRECISIONS[PRECISIONS.index(precision) + 1:]:
        if why_not(candidate, capabilities) is None:
            return candidate
    return PRECISIONS[-1]
