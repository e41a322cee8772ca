"""Faust agents: thin adapters that move records between topics and stores."""
