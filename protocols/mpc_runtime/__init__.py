"""How secvit runs CrypTen: keyed randomness, the communicator's fixes, settings and
providers, sessions with a dealer, dry runs. Each module reaches CrypTen through
:mod:`protocols.backend`, which imports them and re-exports their API: import that.
"""
