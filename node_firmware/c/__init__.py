"""C99 int8 runtime sources and the model-to-C generator (codegen.py)."""
