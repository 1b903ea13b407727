"""Kindred's intent layer: Rasa project, embedded interpreter and the safety net."""
