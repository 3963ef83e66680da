FROM python:3.11-slim

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home /app aqara \
    && mkdir /config && chown aqara /config

USER aqara
VOLUME ["/config"]
# Healthy while the bridge's retained state topic says "online" (the LWT turns it "offline").
HEALTHCHECK --interval=60s --timeout=15s --start-period=30s --retries=3 \
    CMD ["aqara-mqtt", "health", "-c", "/config/config.yaml"]
ENTRYPOINT ["aqara-mqtt"]
CMD ["run", "-c", "/config/config.yaml"]
