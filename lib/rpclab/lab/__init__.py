"""Instruments that watch and time any transport: wire taps, timing, latency, plots, tracing, one
call taken apart.

Used across notebooks 01-15.
"""
