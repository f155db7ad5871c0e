"""odin-ood: ODIN out-of-distribution detection (Liang, Li & Srikant, ICLR 2018)."""

__version__ = "0.1.0"
