"""Queue and Mailslot (filled in by the Queue work)."""
__all__: list = []
