"""Light clients of the dictated daemon: pyzmq and the standard library only."""
