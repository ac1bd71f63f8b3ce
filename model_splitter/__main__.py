"""``python -m model_splitter``: serve the splitter on SPLITTER_HOST:SPLITTER_PORT."""

import sys

from common.serve import main
from model_splitter.app import create_app
from model_splitter.settings import SplitterSettings

if __name__ == "__main__":
    sys.exit(main(SplitterSettings, create_app))
