"""Training engines: TRL on one machine, verl on a Ray cluster; each maps the shared config."""
