"""An example lossatlas plugin package (see plugin.py)."""
