"""Data files shipped with Agentray: prompts, pricing, icons, demo project."""
