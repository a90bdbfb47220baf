"""Live-agent handoff: routing, schedules, the handoff packet, agent accounts, webhooks.

The pure parts (config, routing, schedule, packet, passwords) live here; the queue itself is in
the store (`store.memory`, `store.redis`: the same contract), and `server.handoffs` runs it.
"""
