"""tests/python/testdata.py: where the test data lives (tests/data). Test modules import DATA_DIR
from here, not from conftest: pytest collects tests/python and tests/clients in one run and each
has its own conftest.py, so `import conftest` would name whichever was imported first."""
import pathlib

DATA_DIR = pathlib.Path(__file__).resolve().parent.parent / "data"
