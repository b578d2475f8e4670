"""Checkpoints trained by other code (docs/your_own_checkpoints.md).

- :mod:`twoclocks.interop.spec`: the ``foreign`` section of a run's config.json (factory, loader,
  checkpoint files, convention) and who may import the factory (nothing is imported untrusted);
- :mod:`twoclocks.interop.conventions`: EDM D / F, eps / v / x0 under VP schedules and autoregressive
  logits, each converted to the toolkit's D(x, s) or next-cell logits;
- :mod:`twoclocks.interop.factory`: import the trusted factory, load a checkpoint weights-only;
- :mod:`twoclocks.interop.export`: the run's data in plain formats, and data-only run directories.
"""
from twoclocks.interop.spec import ForeignSpec, foreign_checkpoints, foreign_spec, trusted_factory

__all__ = ["ForeignSpec", "foreign_spec", "foreign_checkpoints", "trusted_factory"]
