"""The subcommands of ``async-amp``, one module each (see ``async_amp.cli`` for how to add one)."""
