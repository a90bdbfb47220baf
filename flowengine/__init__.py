"""flowengine: menu-driven self-service flows, validated like code, run as pure state machines."""

__version__ = "0.1.0"
