"""Interactive controls for the notebooks; the logic behind each lives in a plain, tested module."""
