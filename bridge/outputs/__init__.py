"""Outputs: extensions the core feeds (Home Assistant discovery, Homie), each on its own topics."""
