"""Helpers with no model knowledge: atomic file writes and visualisation (`focus.utils.visualizer`)."""
