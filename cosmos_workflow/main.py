"""``python -m cosmos_workflow.main``: the seed's form of the command line."""

from cosmos_workflow.cli import main

if __name__ == "__main__":
    main()
