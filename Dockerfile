# The daemon image: `docker compose up -d` (see docker-compose.yml).
# python:3.11 is the version the test suite runs on; -slim because every dependency
# (selectolax, nh3, numpy, ...) ships manylinux wheels, so no compiler is needed.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# README.m[d]: the glob lets the build work before the README exists (setuptools only warns).
COPY pyproject.toml README.m[d] ./
COPY scraper ./scraper
# The postgresql extra (psycopg 3 and its pool, binary wheels): the same image runs on SQLite
# or, with --db postgresql://..., on PostgreSQL (docker-compose.yml's postgres profile).
RUN pip install '.[postgresql]'

# A fixed, non-root uid: files on the named volume keep one owner across rebuilds.
# /data must exist in the image and belong to that user: Docker initialises a new named
# volume from the image's directory, ownership included, so the daemon can write there.
RUN groupadd --system --gid 10001 scraper \
    && useradd --system --uid 10001 --gid scraper --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin scraper \
    && mkdir -p /data /config \
    && chown scraper:scraper /data

USER scraper:scraper
WORKDIR /data

# The daemon finishes in-flight refreshes on SIGTERM (up to SCRAPE_SHUTDOWN_GRACE, 25 s).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["scrape", "status", "--check", "--config", "/config/feeds.yaml", "--db", "/data/scrape.db"]

ENTRYPOINT ["scrape"]
CMD ["--config", "/config/feeds.yaml", "--db", "/data/scrape.db"]
