"""Vision training methods: one module per paper, each a config + a :class:`~.base.Method`; names in :mod:`.registry`."""
