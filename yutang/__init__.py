"""Yutang (鱼塘): an open-source private-domain customer operations platform."""

__version__ = "0.1.0"
