"""Pods ⇄ device tasks: admission, restart policy, task bookkeeping, logs."""
