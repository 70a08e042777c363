"""A board emulator built from docs/board-protocol.md alone (see board.py)."""
