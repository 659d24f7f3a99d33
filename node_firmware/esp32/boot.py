"""Runs first on every reset. Kept trivial: nothing here may fail, or the board
would not reach main.py (and a fix could only come over USB)."""
import gc

gc.collect()
