"""`secondnature serve`: an OpenAI-compatible proxy that injects a scope's lessons, records every call as a rollout,
takes feedback, and learns from the traffic in the background (app.py, proxy.py, tenants.py, learner.py,
upstream.py). Needs the `serve` extra (starlette, uvicorn)."""
from .app import ServeConfig, make_app
from .proxy import Upstream
from .tenants import Tenants, load_tenants

__all__ = ["ServeConfig", "Tenants", "Upstream", "load_tenants", "make_app"]
