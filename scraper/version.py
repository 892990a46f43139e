"""The release and its User-Agent: every layer imports this, so it imports nothing."""

__version__ = "0.1.0"

#: Sent with every request so that site operators can tell who is polling them.
USER_AGENT = f"scraper/{__version__} (+https://github.com/; RSS scraper and deduplicator)"
