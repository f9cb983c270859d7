"""`mfc serve`: Ollama's HTTP API on a batching scheduler, one runner process per model.

Modules: ``config`` (the environment table), ``guard`` (Host/CORS checks),
``ollama`` (pure translation of Ollama's API), ``app``/``routes_ollama``/``create``
(handlers), ``inference`` (prompt → runner), ``scheduler`` (model lifecycle),
``runners``/``runner``/``protocol`` (the runner processes). See docs/serve.md.
"""
