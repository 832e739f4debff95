from controller.commands.main import main

main()
