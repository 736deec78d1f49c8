"""The pure protocol core: no I/O, no clock; time is always a parameter."""
