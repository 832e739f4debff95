from localwhisk.cli import main

main()
