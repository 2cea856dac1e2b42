"""Mission control: a local dashboard over a run's journal, in the browser, live.

``swarm-actors dashboard`` (``swarm_actors._cli._dashboard``) serves one page: the agent graph
(edges only from the causation ids and citations events carry), a virtualized event log with
filters, the selected change's diff with its hashes and verdict, the trace panel, model-call
figures per agent, and a replay slider over the workspace. The page is plain HTML, CSS and
JavaScript modules shipped in ``static/`` (no build step, nothing loaded from elsewhere).

Modules: ``_rows`` (an event as the page sees it), ``_feed`` (the rows, filled from the run's
journal and followed live), ``_app`` (the starlette app and its guard), ``_replay`` (the
workspace at a point, over ``swarm_actors.replay``), ``_serve`` (binding and uvicorn).

May import: the public facades (``events``, ``tools``, ``errors``), ``_runs`` and
``_runjournal`` (finding and opening runs), ``replay``, and the base modules; never the engine or
the NATS layer directly. Needs the ``dashboard`` extra (starlette, uvicorn).
"""

from swarm_actors._dashboard._app import CSP, TOKEN_COOKIE, Guard, create_app, safe_path
from swarm_actors._dashboard._feed import Feed, FeedTask, Status, follow_run
from swarm_actors._dashboard._replay import replay_api
from swarm_actors._dashboard._serve import bind, is_loopback, serve

__all__ = [
    "CSP",
    "TOKEN_COOKIE",
    "Feed",
    "FeedTask",
    "Guard",
    "Status",
    "bind",
    "create_app",
    "follow_run",
    "is_loopback",
    "replay_api",
    "safe_path",
    "serve",
]
