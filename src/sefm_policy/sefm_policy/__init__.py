"""The SEFM policy node: acts for one or many stations from the current policy version."""
