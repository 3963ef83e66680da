"""Aqara Studio hub: Data Export API v1 (WebSocket push, HTTP management)."""
