"""Aqara cloud: the Aqara Open API v3 (signed HTTPS intents, HTTP trait push)."""
