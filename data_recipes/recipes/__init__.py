"""One module per family of source datasets; each recipe class registers itself by name."""
