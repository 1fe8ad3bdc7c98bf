"""Built-in node packs, one sub-package per pack, written with the public API only."""
