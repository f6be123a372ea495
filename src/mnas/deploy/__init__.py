"""``mnas export``: a network written in a runtime's format (export.py), checked against PyTorch on its
outputs and on the validation split (parity.py), and re-timed as the file an application will load."""
