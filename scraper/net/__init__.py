"""HTTP: the fetcher and the private-address guard."""
