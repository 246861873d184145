"""What every stage uses: the user-error type, config round trips, range syntax, seeded draws,
durable files, the cache location and the progress protocol. Imports nothing else of cimsim."""
