"""CSRA: class-specific residual attention for multi-label image recognition (ICCV 2021)."""

from csra.errors import CSRAError

__all__ = ["CSRAError"]
