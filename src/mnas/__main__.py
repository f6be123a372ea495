from mnas.cli import entry

entry()
