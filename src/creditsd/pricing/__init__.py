"""The price catalog and what it says each use costs."""
