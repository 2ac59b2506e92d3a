from mt.cli import run

run()
