"""Imported first by every script: puts this checkout's src/ at the front of sys.path.

Snakemake adds this folder (workflow/scripts) to a script job's sys.path, so `import _checkout` finds
this file in the checkout the Snakefile came from; `advdefense` is then imported from that same
checkout, never from another installed or checked-out copy. (`snakemake.scriptdir` is
`workflow/rules/../scripts`, whose unresolved parents do not lead to src/.)
"""
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")
if SRC in sys.path:
    sys.path.remove(SRC)
sys.path.insert(0, SRC)
