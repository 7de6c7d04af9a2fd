"""Engines: device-specific builds of the shipped model, cached by a precise key.

key.py what an engine depends on · store.py atomic, verified storage · policy.py which precision ·
worker.py the build, in a child process · builder.py runs the child and survives it ·
acceptance.py the golden check · manager.py the lifecycle: key -> lookup -> build -> store -> verify -> load.
"""
