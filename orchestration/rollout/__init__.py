"""Staged trust: stages per scope, the human baseline, exit criteria, promotion, demotion.

Public modules:
    settings  ``rollout:`` in opsgate.yaml (scope rules, exit criteria, demotion rules)
    scopes    choose(): the stage a step runs under, and why (stored on the step)
    stages    current_stages(), sync_rules(), move(), demote(): the stage of each scope now
    baseline  record(), record_did(), after_close(): what humans did
    evidence  judgements(), evidence(): FP / FN / agreement / cost per action (formulas there)
    criteria  evaluate(): exit criteria against evidence
    report    scope_status(), status_text(): ``opsgate rollout status``
    promotion open_promotion(), vote_promotion(): promotion is an approval
    guard     after_failure(), check_regressions(): demotion is automatic
"""
