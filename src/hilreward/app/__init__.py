"""hilreward.app: the web app. FastAPI + uvicorn, plain HTML/JS/CSS shipped in ``static/`` (no build step,
no CDN: it works offline). It binds 127.0.0.1 by default; any other address needs a token
(:mod:`hilreward.access`, the rule ``hilreward serve`` uses too).

Structure
- ``factory.py``: ``create_app(pages, token, state)`` builds one FastAPI app: ``/`` redirects to the first
  page, ``/static/`` serves the shared assets, ``/api/pages`` lists the pages for the navigation bar, a
  :class:`~hilreward.errors.HilrewardError` becomes ``{"detail": message}`` with the HTTP status of
  :data:`hilreward.errors.STATUS` (bad input 400, token 401, the reward server unreachable 503), and with a token every
  request must carry it. ``state`` entries become ``app.state.<name>``: the services the pages use.
- ``server.py``: :class:`AppServer` runs an app with uvicorn on a socket it binds (``port=0`` works), in a
  thread (tests, benchmarks) or in the foreground (the CLI), behind ``guard.py``'s ``HostGuard``: only
  loopback names, the bound host and ``allowed_hosts`` in ``Host`` (400), no writes from other sites (403).
- one router module per page: ``label.py`` (the label station: router, its ``hilreward label`` command);
  its state without HTTP lives in ``label_station.py`` (pydantic models of its API included).
  ``console.py`` (the operator console: router, ``hilreward console`` and ``hilreward serve console=true``)
  and ``review.py`` (corrections to review, versions timeline) share ``console_service.py`` (every call
  goes through a :class:`~hilreward.serving.RewardClient`), ``activity_feed.py`` (one WatchActivity
  stream fanned out to the pages as server-sent events) and ``console_models.py`` (their JSON).
- ``static/``: ``common.css`` (layout, colours, buttons, tables, phone-sized screens) and ``common.js``
  (``api()`` fetch helper with error display, the navigation bar, ``onKeys()``) for every page; then
  ``<page>.html`` / ``<page>.js`` / ``<page>.css``.

Adding a page (e.g. ``console``):
1. ``app/console.py``: ``router = APIRouter()``, ``PAGE = Page("console", "Operator console", router)``; serve
   the HTML with ``page_html("console")`` at ``/console/`` and JSON under ``/api/console/``, with typed
   pydantic models; handlers call the library functions the CLI calls (no logic in handlers) and take their
   service from ``request.app.state``.
2. ``static/console.html`` (link ``/static/common.css``, load ``/static/common.js``, put ``<nav id="nav">``
   in the header) and ``static/console.js``.
3. the command's ``main`` builds ``create_app([console.PAGE, ...], token, state={...})`` and runs it with
   ``AppServer``; register the command in ``cli.py``. Pages given together share one app and navigation bar.
"""

from .factory import Page, create_app
from .server import AppServer

__all__ = ["AppServer", "Page", "create_app"]
