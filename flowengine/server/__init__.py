"""The imperative shell around the engine: HTTP and WebSocket transport, sessions in a store,
effects run with timeouts."""
