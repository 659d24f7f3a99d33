"""Stand-in for micropython-lib's umqtt on CPython."""
