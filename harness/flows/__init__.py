"""Flows the harness runs: the bot-detection flow (`bots`), and loading a user's."""
