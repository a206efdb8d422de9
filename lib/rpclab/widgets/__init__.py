"""Interactive controls for the notebooks; the logic behind each lives in a plain, tested module.

Used in notebooks 01, 04, 05 and 10.
"""
