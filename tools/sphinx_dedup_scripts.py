"""Sphinx extension: drop a page's repeated inline scripts.

sphinx-thebe 0.3.1 (Jupyter Book 1.x) adds its ``const THEBE_JS_URL = ...`` script twice under
Sphinx 7, and the browser reports "Identifier 'THEBE_JS_URL' has already been declared" on every
page (tests/test_browser.py). Identical scripts are dropped here, keeping the first.
"""


def _dedup(app, pagename, templatename, context, doctree):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        # the two copies differ only in filename: None for one, "" for the other
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"][:] = kept


def setup(app):
    app.connect("html-page-context", _dedup, priority=100)  # early: emit_firstresult stops at a handler that returns a template
    return {"parallel_read_safe": True, "parallel_write_safe": True}
