"""The web page served by the daemon: an output fed by the core's own events (``output``), its
documents (``views``), per-browser bounded queues (``feed``) and the aiohttp server (``server``)
with the static page (``static/``)."""
