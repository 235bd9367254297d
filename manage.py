#!/usr/bin/env python
"""Django's manage.py, for developers used to it; `yutang` is the same with friendlier names."""

from yutang.cli import main

if __name__ == "__main__":
    main()
