"""Pure functions over plain data: parse, normalize, rules, fulltext, fingerprint, schedule.

Nothing here touches the network, the database or the clock; nothing here imports from
outside ``scraper.core``.
"""
