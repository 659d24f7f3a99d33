from tinyfleet.cli import main

main()
