"""Health-aware routing, monitoring and failover for LLM calls."""
