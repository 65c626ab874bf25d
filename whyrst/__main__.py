from whyrst.cli import run

run()
