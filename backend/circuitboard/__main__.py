from circuitboard.cli import run

run()
