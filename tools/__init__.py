"""Developer tools that ship in the repository, not in the package (training the demo model, docs images)."""
