"""Rendering: profiles, jobs (each names its output), the builders, one function per step."""
