"""The stages of produce-video, one module each, called in order by flows/produce_video.py.

Stages are plain functions, not subflows: a deployed run suspends at a gate and, on resume,
re-runs from the top, where every finished task comes back Cached. Each takes the run's
`RunContext` and returns small values (object keys, job models).
"""
