"""The run folder: its file names, the event log, and the run table read from them."""
