"""The adapters' configuration schemas, importable without the adapters' client libraries.

``orchestration.config`` validates ``opsgate.yaml`` with these models; each adapter module
re-exports its own (``adapters.http.HttpConfig`` is ``adapters.settings.http.HttpConfig``). They
import pydantic, yarl and ``common`` only: reading the config file must not load aiohttp, hvac,
sqlglot, psycopg or lightkube (``opsgate digest`` starts without them).
"""
