"""The chair's own remote: a page and a WebSocket served by ``chair serve --web`` (docs/web.md).

- `chair.web.server` — `WebRemote`: the ASGI app (page, assets, ``/ws``) on uvicorn, in the
  daemon's loop; commands go through the chair's one `CommandDesk` (`chair.commands`).
- `chair.web.pairing` — the pairing token, its cookie, the pairing address and its QR code.
- ``chair/web/assets/`` — the page (HTML, CSS, JavaScript), served by the chair: no CDN.
"""
