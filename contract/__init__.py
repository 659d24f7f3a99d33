"""The one wire contract shared by every tier. Runs under CPython and MicroPython."""
