"""Engines: device-specific builds of the shipped model, cached by a precise key.

key.py what an engine depends on · store.py atomic, verified storage · policy.py which precision ·
worker.py the build, in a child process · builder.py runs the child and survives it ·
acceptance.py the golden check against the FP32 reference · measure.py timing on this device ·
manager.py the lifecycle: key -> lookup -> build -> accept -> store -> time -> load.
"""
