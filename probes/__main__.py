"""``python -m twoclocks.probes > docs/cubes.md``: the cube tables, generated from the registry."""
from twoclocks.probes.registry import markdown

print(markdown(), end="")
