"""Model families; importing this package registers every factory with :mod:`sdt3_event.registry`."""
