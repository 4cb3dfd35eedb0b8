"""Progress bars: notebook widgets where ipywidgets is installed (Colab), plain text elsewhere."""
try:
    import ipywidgets  # noqa: F401  (only probing: tqdm.auto warns when widgets are missing)
    from tqdm.auto import tqdm
except ImportError:
    from tqdm import tqdm

__all__ = ["tqdm"]
