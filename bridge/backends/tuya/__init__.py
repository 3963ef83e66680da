"""Tuya cloud: OpenAPI (HMAC-SHA256 signed) and the Pulsar message service."""
