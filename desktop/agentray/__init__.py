"""Agentray: async multi-agent orchestration that runs in the background."""

__version__ = "0.1.0"
