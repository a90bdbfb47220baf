"""Attack tests: each starts a real server and tries what an attacker would (issue 14)."""
