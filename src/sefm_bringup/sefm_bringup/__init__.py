"""SEFM bringup: the `sefm` command line, configs and the graph runner."""
