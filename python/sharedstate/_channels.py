"""Pipe, PipeServer and Semaphore (filled in by the channels work)."""
__all__: list = []
