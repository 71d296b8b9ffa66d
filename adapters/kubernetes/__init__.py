"""The ``kubernetes`` tool: read a cluster, restart, scale and roll back deployments.

Actions: ``get`` (pods, deployments, events) and ``logs`` are read-only and use the read-only
credential of the settings (``read_token``, a ``${secret:NAME}`` reference resolved at call
time). ``rollout_restart``, ``scale`` and ``rollout_undo`` change state, and each call gets a
token minted for it alone: the adapter asks the TokenRequest API for a bound token of the
service account mapped to that action (``service_accounts``), valid as long as the step's grant
(at least the API's 600 s floor), for the configured audiences, and calls the API with that
token only. Every minted token joins the redaction set and is reported as a credential fact
(see :attr:`adapters.ToolResult.credentials`, and :func:`adapters.credentials.report_issued` as
soon as it is minted), never its value.

State-changing calls run first with server-side dry run (``dryRun=All``); the real call is sent
only when the dry run passed. :meth:`KubernetesTool.preview` runs the dry run alone and says
what the call would do ("would set replicas 3 -> 1"), for the approval card.

Namespaces are allow-listed (``namespaces``): a call outside them is refused with
``namespace_not_allowed`` before any request is made. API refusals (401, 403, 404, 422, ...)
are :class:`adapters.ToolFailed` errors quoting the API server's Status message; 409, 429 and
5xx are retryable, the others are not.

The stand-in API server for tests is :mod:`adapters.testing.kubernetes`.
"""

from typing import TYPE_CHECKING

from common.lazy import lazy

if TYPE_CHECKING:
    from adapters.kubernetes.settings import (
        GetArgs,
        KubernetesConfig,
        LogsArgs,
        RestartArgs,
        ScaleArgs,
        UndoArgs,
    )
    from adapters.kubernetes.tool import KUBERNETES_SPEC, RESTARTED_AT, KubernetesTool

# What each name is loaded from when first used: importing the package (for
# ``adapters.settings``, say) loads none of them.
_EXPORTS = {
    "GetArgs": "adapters.kubernetes.settings",
    "KubernetesConfig": "adapters.kubernetes.settings",
    "LogsArgs": "adapters.kubernetes.settings",
    "RestartArgs": "adapters.kubernetes.settings",
    "ScaleArgs": "adapters.kubernetes.settings",
    "UndoArgs": "adapters.kubernetes.settings",
    "KUBERNETES_SPEC": "adapters.kubernetes.tool",
    "RESTARTED_AT": "adapters.kubernetes.tool",
    "KubernetesTool": "adapters.kubernetes.tool",
}
__getattr__ = lazy(__name__, _EXPORTS)

__all__ = [
    "KUBERNETES_SPEC",
    "RESTARTED_AT",
    "GetArgs",
    "KubernetesConfig",
    "KubernetesTool",
    "LogsArgs",
    "RestartArgs",
    "ScaleArgs",
    "UndoArgs",
]
