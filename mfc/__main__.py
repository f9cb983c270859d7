from mfc.cli.main import main

main()
