"""``python -m creditsd``."""

from creditsd.cli import main

main()
