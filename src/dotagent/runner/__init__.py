"""Running agents: spawning and supervising one process, and the lifecycle around it."""
