"""Live-agent handoff, one feature in one folder: handoff.yaml (`config`), routing and opening
hours (`routing`), the handoff packet (`packet`), agent accounts and passwords, the queue at
work (`service`), the agent socket and the console's HTTP side (`agent_socket`, `routes`,
`console/`), and webhooks (`webhooks`).

The queue itself is kept by the store (`store.base.HandoffStore`, on memory and Redis); only
`service` touches it.
"""
