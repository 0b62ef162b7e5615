"""The trainer: one loop for every stage (core/trainer/loop.py), what it measures and how it is judged (monitor,
watchdog, hand-over), a budget in minutes, its schedule, its random streams, its checkpoint, and DDP."""
