"""trigger_service."""
