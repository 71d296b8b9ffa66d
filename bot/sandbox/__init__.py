"""A local stand-in for Slack, so opsgate runs and is tested without a Slack account.

- `limits`: Slack's documented Block Kit and message limits as pure checks, reported in Slack's
  own `invalid_blocks` wording, so nothing passes here that Slack would refuse.
- `workspace`: the in-memory workspace (users, channels, messages, threads, ephemerals, views,
  files).
- `methods`: the Web API methods opsgate uses, as functions over the workspace.
- `webapi`: `FakeSlack`, an aiohttp server speaking the Web API (`/api/{method}`) for
  `slack_sdk`'s `AsyncWebClient(base_url=...)`, with fault injection (rate limiting, outages)
  and a subscriber queue feeding the browser sandbox of `opsgate demo`.
- `signing`: the requests Slack sends to the app (slash commands, button clicks, modal
  submissions, events), signed with the app's signing secret.
- `responses`: the `response_url`s of those requests, served locally with Slack's documented
  message-response behaviour (5 uses in 30 minutes; a command's answer is never replaced).
- `ui`: `Sandbox`, the browser Slack client of `opsgate demo`: acts as chosen personas
  (`personas`), sending the bot the signed requests Slack would send (`courier`) and showing
  what Slack would show (`modals`: whose each open view is, and what a submission's ack does);
  `page` serves it to the browser: a Slack-like page (`static/`), its
  state per page load and live changes over Server-Sent Events.

Errors: Web API refusals are `methods.ApiError`, rendered as Slack's `{"ok": false, ...}` body.
"""
