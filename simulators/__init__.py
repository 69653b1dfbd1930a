"""Virtual devices, daily routines, scenarios, record/replay and load."""
