"""Starts the TinyFleet node app from /lib/tinyfleet_node. A config error or a
flash without any valid model is printed and the board waits (a reset loop would
hide it); any other crash resets
the board after a pause, and the slot logic brings it back on a valid model."""
import sys
import time

from tinyfleet_node import app, config, slots

try:
    app.main("/config.json")
except (config.ConfigError, slots.NoValidModel) as e:
    print("tinyfleet: cannot start:", e)  # resetting would not help: wait for a fix over USB
    while True:
        time.sleep(60)
except Exception as e:
    sys.print_exception(e)
    time.sleep(5)
    import machine
    machine.reset()
