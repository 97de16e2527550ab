"""The pipeline's error types. This module imports nothing of the package, so every module can
import it (no import circle through the configuration module).

- :class:`ConfigError`: a configuration value is missing, malformed or inconsistent; the message
  starts with the dotted config key to change.
- :class:`PipelineFileError`: a file the pipeline reads (dataset, attack, latent or purified HDF5,
  checkpoint, training state, CIFAR batch) is missing, unreadable, truncated or malformed; the
  message starts with the file's path. Each stage's own file error derives from it.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is missing, malformed or inconsistent."""


class PipelineFileError(ValueError):
    """A pipeline input file is missing, unreadable or malformed (the message names the file)."""
