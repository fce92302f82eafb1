"""Golden-fixture generator for segloss.

`common` holds the machinery every loss family shares (seeding, running the anchor, saving tensors,
writing the manifest); each other module is one loss family and exposes `cases()`, its case catalog.
"""
