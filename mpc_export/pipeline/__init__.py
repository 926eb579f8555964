"""The pipelines the commands run (build, verify), independent of the command line: cli/ parses and prints,
these do the work, and a backend plugs into them in one place."""
