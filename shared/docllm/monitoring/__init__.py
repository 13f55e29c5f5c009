"""Monitoring: CloudWatch alarm semantics (pure), the template's alarm definitions, the local
evaluator that plays CloudWatch on the local platform, drift signals, the canary and incidents."""
