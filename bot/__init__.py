"""The Slack surface and composition root of opsgate: CLI, app wiring, (later) Bolt listeners.

Nothing imports ``bot``; it builds the control plane and its collaborators in ``bot.main``.
"""
