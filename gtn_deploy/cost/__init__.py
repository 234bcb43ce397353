"""Cost models: analytic FLOPs/params/memory and the latency tiers (no torch)."""
