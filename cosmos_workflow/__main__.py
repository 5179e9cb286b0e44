"""``python -m cosmos_workflow``."""

from cosmos_workflow.cli import main

if __name__ == "__main__":
    main()
