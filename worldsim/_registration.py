"""Gymnasium registration. ``import worldsim`` runs this (Gymnasium 1.x has no
plugin autoload); ``gymnasium.make("worldsim:ID")`` imports worldsim first.

The environments themselves arrive with the simulator; until then nothing is
registered.
"""
