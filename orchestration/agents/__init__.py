"""The LLM agents: a Researcher and a Planner, each under its own role, on a token budget.

Nothing here is imported unless ``llm:`` (or ``OPSGATE_LLM_BASE_URL``) is configured; this
``__init__`` imports nothing, so that importing the Planner module never pulls in the client.

- :mod:`~orchestration.agents.client`: :class:`ModelClient`, one OpenAI-compatible chat API
  (the ``openai`` SDK), retries with backoff on 429 / 5xx, usage and confidence per call.
- :mod:`~orchestration.agents.meter`: :class:`TokenMeter`, every call metered into cost lines
  (role, model, tokens, USD) and forecast against the plan's budget before it is made.
- :mod:`~orchestration.agents.planning`: the LLM Planner's prompt and :func:`parse_answer`, a
  pure validation of the model's answer into a plan draft (no credential, no tool, no client).
- :mod:`~orchestration.agents.catalogue`: :class:`ActionCatalogue`, registered tool actions as
  plain data (schemas, declared risk, read-only) with their args validation.
- :mod:`~orchestration.agents.researcher`: :func:`research`, a bounded loop of read-only tool
  actions through the guards; findings point at the spans holding the raw results.
- :mod:`~orchestration.agents.run`: :func:`run_agents`, Researcher then Planner, with the
  fallbacks (runbook planner, humans) and the reasons said in the thread.
- :mod:`~orchestration.agents.transcripts`: compressed transcripts with a retention period.
"""
