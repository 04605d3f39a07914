from berth.cli import main

main()
