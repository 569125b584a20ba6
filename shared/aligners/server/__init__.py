"""HTTP serving: the aligning proxy (``aligners serve``) and a plain OpenAI-compatible model
server (``aligners serve --plain``). Needs the ``server`` extra (fastapi, uvicorn, httpx).

>>> from aligners.server import create_app, serve_in_thread  # doctest: +SKIP
>>> server = serve_in_thread(create_app())  # doctest: +SKIP
"""

from aligners.backends.local import Completion, LocalGenerator
from aligners.server.model_server import create_model_app
from aligners.server.proxy import (
    LocalUpstream,
    ProxyApp,
    RemoteUpstream,
    Upstream,
    create_app,
)
from aligners.server.run import RunningServer, run, serve_in_thread
from aligners.server.settings import ModelServerSettings, ProxySettings, ServerLimits

__all__ = [
    "Completion",
    "LocalGenerator",
    "LocalUpstream",
    "ModelServerSettings",
    "ProxySettings",
    "RemoteUpstream",
    "RunningServer",
    "ServerLimits",
    "Upstream",
    "create_app",
    "ProxyApp",
    "create_model_app",
    "run",
    "serve_in_thread",
]
