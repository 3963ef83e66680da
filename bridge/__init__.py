"""aqara-mqtt: bridge Aqara Studio, Aqara cloud and Tuya cloud hubs to MQTT."""

__version__ = "0.1.0"
