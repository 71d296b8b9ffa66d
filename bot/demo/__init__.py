"""``opsgate demo``: the whole incident flow on one machine, no Slack workspace needed.

It starts a demo service that breaks, an alert watcher, the bot, and the browser Slack sandbox.
"""
