from scheduler import runner  # noqa: F401  (defines the registry first, then imports every feature module)
