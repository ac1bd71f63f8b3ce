"""``python -m model_splitter``: serve the splitter on SPLITTER_HOST:SPLITTER_PORT."""

from common.serve import serve
from model_splitter.app import create_app
from model_splitter.settings import SplitterSettings

if __name__ == "__main__":
    serve(SplitterSettings(), create_app)
