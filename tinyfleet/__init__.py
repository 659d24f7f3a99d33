"""TinyFleet: the command line and the local process harness that tie the tiers together."""
__version__ = "0.1.0"
