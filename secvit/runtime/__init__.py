"""Running parties: one process per party, rendezvous, watchdog, custody audit."""
