"""The `sefm` command line."""
