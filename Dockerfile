# aqara-mqtt in a container. Build: docker build -t aqara-mqtt .
# Run: see README.md, "Docker" (config mounted read-only, secrets from an env file, state volume).
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change,
# not on every code change.
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb')); print('\n'.join(p['project']['dependencies'] + p['build-system']['requires']))" > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Then the code: no dependency resolution and no download any more.
COPY README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin aqara \
    && install -d -m 0700 -o 10001 -g 10001 /data

# Renewed Aqara cloud tokens live here: `token_file: ${STATE_DIRECTORY}/aqara-tokens.json`.
ENV STATE_DIRECTORY=/data
VOLUME ["/data"]
USER 10001:10001

# Healthy = the bridge is online and every hub connected (`aqara-mqtt health`: 0 ok; 1 starting
# or degraded, e.g. a hub refused its token; 3 the bridge is offline or the broker unreachable).
HEALTHCHECK --interval=60s --timeout=20s --start-period=2m --retries=3 \
    CMD ["aqara-mqtt", "health", "-c", "/config/config.yaml", "--timeout", "10"]
ENTRYPOINT ["aqara-mqtt"]
CMD ["run", "-c", "/config/config.yaml"]
