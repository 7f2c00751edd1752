"""cloudkit: cloud detection in Sentinel-2 imagery with self-supervised learning."""

__version__ = "0.1.0"
